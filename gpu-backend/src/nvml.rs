//! The NVML backend: the NVIDIA driver through `libnvidia-ml.so.1`, loaded at run time.
//!
//! `nvml-wrapper` 0.13 loads the library and initialises NVML; everything after that goes through the raw
//! functions of `nvml-wrapper-sys`, because the wrapper has no GPU/compute-instance create or destroy,
//! its `possible_placements()` returns an empty list (capacity set, length never set), and it reports
//! INSUFFICIENT_RESOURCES as `UnexpectedVariant(23)`. Every symbol is a `Result` field of `NvmlLib`: a missing
//! one is an error naming it, never a panic (the `NvmlLib` methods would panic).
//!
//! Builds everywhere; without the driver, [`NvmlBackend::open`] returns an [`ErrorKind::Unavailable`] error.
//! Exercised on hardware (read only) by `scripts/gpu-discover-on-real-gpu.sh`.

// The raw NVML calls are `unsafe extern "C"` functions: this module is the one place that calls them.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::fmt::Display;
use std::os::raw::{c_char, c_uint};

use nvml_wrapper::error::NvmlError;
use nvml_wrapper::Nvml;
use nvml_wrapper_sys::bindings as sys;

use crate::error::{code, ErrorKind, GpuError, Result};
use crate::mig::{
    normalize_pci, BackendKind, ComputeInstance, DeviceInfo, DriverVersions, GpuBackend,
    GpuInstance, MigDevice, MigMode, Placement, ProfileInfo,
};

/// The library file NVML lives in (the driver package installs it; the unversioned name needs the dev package).
pub const LIB: &str = "libnvidia-ml.so.1";

/// The NVML backend.
pub struct NvmlBackend {
    nvml: Nvml,
}

impl std::fmt::Debug for NvmlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlBackend").finish_non_exhaustive()
    }
}

/// The error for an `NvmlError` from loading or initialising NVML.
pub fn init_error(e: &NvmlError) -> GpuError {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::FailedToLoadSymbol(_) | NvmlError::LibraryNotFound => {
            GpuError::new(
                ErrorKind::Unavailable,
                format!(
                    "NVML is not available: {LIB} could not be loaded ({e}). Install the NVIDIA driver, or use the \
                     simulated GPU backend (gpu_backend = \"simulated\", or --backend simulated)."
                ),
            )
        }
        NvmlError::DriverNotLoaded => GpuError::new(
            ErrorKind::Unavailable,
            "NVML is installed but the NVIDIA kernel driver is not loaded. Load it (`modprobe nvidia`) or use the \
             simulated GPU backend.",
        ),
        NvmlError::NoPermission => GpuError::new(
            ErrorKind::NoPermission,
            "NVML refused to initialise: no permission to talk to the NVIDIA driver. Run as root or as a user \
             allowed to open /dev/nvidia*.",
        ),
        other => {
            let c: u32 = sys::nvmlReturn_t::from(clone_error(other));
            GpuError::nvml(c, "initialising NVML")
        }
    }
}

/// `NvmlError` is not `Clone`; the variants that carry data are handled before this is used.
fn clone_error(e: &NvmlError) -> NvmlError {
    match e {
        NvmlError::UnexpectedVariant(c) => NvmlError::UnexpectedVariant(*c),
        NvmlError::Uninitialized => NvmlError::Uninitialized,
        NvmlError::InvalidArg => NvmlError::InvalidArg,
        NvmlError::NotSupported => NvmlError::NotSupported,
        NvmlError::NotFound => NvmlError::NotFound,
        NvmlError::InUse => NvmlError::InUse,
        NvmlError::ResetRequired => NvmlError::ResetRequired,
        NvmlError::GpuLost => NvmlError::GpuLost,
        _ => NvmlError::Unknown,
    }
}

/// A symbol of the loaded library, or an error naming it.
fn sym<'a, T, E: Display>(r: &'a std::result::Result<T, E>, name: &str) -> Result<&'a T> {
    r.as_ref().map_err(|e| {
        GpuError::new(
            ErrorKind::NotSupported,
            format!(
                "The installed NVIDIA driver's {LIB} has no function {name} ({e}). Update the NVIDIA driver \
                 (MIG needs R450 or later; placements need R470 or later)."
            ),
        )
    })
}

/// Ok on NVML_SUCCESS, else the error for `doing`.
fn check(c: sys::nvmlReturn_t, doing: impl FnOnce() -> String) -> Result<()> {
    if c == sys::nvmlReturn_enum_NVML_SUCCESS {
        Ok(())
    } else {
        Err(GpuError::nvml(c, &doing()))
    }
}

/// A NUL-terminated C string buffer as a `String`.
fn c_string(buf: &[c_char]) -> String {
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `MIG 1g.10gb` → `1g.10gb`.
pub fn profile_name(raw: &str) -> String {
    raw.trim()
        .strip_prefix("MIG ")
        .unwrap_or(raw.trim())
        .to_owned()
}

/// `NVML_STRUCT_VERSION(GpuInstanceProfileInfo, 2)`.
fn profile_info_v2_version() -> c_uint {
    let size =
        u32::try_from(std::mem::size_of::<sys::nvmlGpuInstanceProfileInfo_v2_t>()).unwrap_or(0);
    size | (2 << 24)
}

impl NvmlBackend {
    /// Loads `libnvidia-ml.so.1` and initialises NVML.
    pub fn open() -> Result<NvmlBackend> {
        let nvml = Nvml::builder()
            .lib_path(OsStr::new(LIB))
            .init()
            .map_err(|e| init_error(&e))?;
        Ok(NvmlBackend { nvml })
    }

    fn lib(&self) -> &sys::NvmlLib {
        self.nvml.lib()
    }

    fn handle(&self, index: u32) -> Result<sys::nvmlDevice_t> {
        let f = sym(
            &self.lib().nvmlDeviceGetHandleByIndex_v2,
            "nvmlDeviceGetHandleByIndex_v2",
        )?;
        let mut h: sys::nvmlDevice_t = std::ptr::null_mut();
        // SAFETY: `f` is NVML's function; `h` is a valid out pointer for the call's duration.
        check(unsafe { f(index, &mut h) }, || {
            format!("opening GPU {index}")
        })?;
        Ok(h)
    }

    fn mig_mode(&self, h: sys::nvmlDevice_t, index: u32) -> Result<MigMode> {
        let f = sym(&self.lib().nvmlDeviceGetMigMode, "nvmlDeviceGetMigMode")?;
        let (mut cur, mut pend): (c_uint, c_uint) = (0, 0);
        // SAFETY: valid handle from NVML, valid out pointers.
        let c = unsafe { f(h, &mut cur, &mut pend) };
        if c == code::NOT_SUPPORTED {
            return Ok(MigMode {
                current: false,
                pending: false,
            });
        }
        check(c, || format!("reading the MIG mode of GPU {index}"))?;
        Ok(MigMode {
            current: cur == sys::NVML_DEVICE_MIG_ENABLE,
            pending: pend == sys::NVML_DEVICE_MIG_ENABLE,
        })
    }

    fn device_info(&self, index: u32) -> Result<DeviceInfo> {
        let h = self.handle(index)?;
        let lib = self.lib();
        let mut name = [0 as c_char; sys::NVML_DEVICE_NAME_V2_BUFFER_SIZE as usize];
        let f = sym(&lib.nvmlDeviceGetName, "nvmlDeviceGetName")?;
        // SAFETY: the buffer is as long as the length passed.
        check(
            unsafe { f(h, name.as_mut_ptr(), sys::NVML_DEVICE_NAME_V2_BUFFER_SIZE) },
            || format!("reading the name of GPU {index}"),
        )?;
        let mut uuid = [0 as c_char; sys::NVML_DEVICE_UUID_V2_BUFFER_SIZE as usize];
        let f = sym(&lib.nvmlDeviceGetUUID, "nvmlDeviceGetUUID")?;
        // SAFETY: as above.
        check(
            unsafe { f(h, uuid.as_mut_ptr(), sys::NVML_DEVICE_UUID_V2_BUFFER_SIZE) },
            || format!("reading the UUID of GPU {index}"),
        )?;
        let f = sym(&lib.nvmlDeviceGetPciInfo_v3, "nvmlDeviceGetPciInfo_v3")?;
        // SAFETY: plain C struct of integers and char arrays; all-zero is a valid value.
        let mut pci: sys::nvmlPciInfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid handle and out pointer.
        check(unsafe { f(h, &mut pci) }, || {
            format!("reading the PCI address of GPU {index}")
        })?;
        let bus_id = c_string(&pci.busId);
        let f = sym(&lib.nvmlDeviceGetMemoryInfo, "nvmlDeviceGetMemoryInfo")?;
        let mut mem = sys::nvmlMemory_t {
            total: 0,
            free: 0,
            used: 0,
        };
        // SAFETY: valid handle and out pointer.
        check(unsafe { f(h, &mut mem) }, || {
            format!("reading the memory of GPU {index}")
        })?;
        Ok(DeviceInfo {
            index,
            uuid: c_string(&uuid),
            name: c_string(&name),
            pci_address: normalize_pci(&bus_id).unwrap_or(bus_id),
            pci_device_id: u16::try_from(pci.pciDeviceId >> 16).unwrap_or(0),
            mig: self.mig_mode(h, index)?,
            memory_mib: mem.total / (1024 * 1024),
        })
    }

    fn placements(
        &self,
        h: sys::nvmlDevice_t,
        index: u32,
        profile_id: u32,
    ) -> Result<Vec<Placement>> {
        let f = sym(
            &self.lib().nvmlDeviceGetGpuInstancePossiblePlacements_v2,
            "nvmlDeviceGetGpuInstancePossiblePlacements_v2",
        )?;
        let mut count: c_uint = 0;
        // SAFETY: a null placements pointer asks for the count only (nvml.h).
        check(
            unsafe { f(h, profile_id, std::ptr::null_mut(), &mut count) },
            || format!("counting the placements of profile {profile_id} on GPU {index}"),
        )?;
        let mut buf = vec![sys::nvmlGpuInstancePlacement_t { start: 0, size: 0 }; count as usize];
        if buf.is_empty() {
            return Ok(Vec::new());
        }
        // SAFETY: the buffer holds `count` placements, as NVML was told.
        check(
            unsafe { f(h, profile_id, buf.as_mut_ptr(), &mut count) },
            || format!("reading the placements of profile {profile_id} on GPU {index}"),
        )?;
        buf.truncate(count as usize);
        Ok(buf
            .into_iter()
            .map(|p| Placement {
                start: p.start,
                size: p.size,
            })
            .collect())
    }

    fn gi_handle(
        &self,
        h: sys::nvmlDevice_t,
        index: u32,
        gi_id: u32,
    ) -> Result<sys::nvmlGpuInstance_t> {
        let f = sym(
            &self.lib().nvmlDeviceGetGpuInstanceById,
            "nvmlDeviceGetGpuInstanceById",
        )?;
        let mut gi: sys::nvmlGpuInstance_t = std::ptr::null_mut();
        // SAFETY: valid handle and out pointer.
        check(unsafe { f(h, gi_id, &mut gi) }, || {
            format!("looking up GPU instance {gi_id} on GPU {index}")
        })?;
        Ok(gi)
    }

    fn gi_info(
        &self,
        gi: sys::nvmlGpuInstance_t,
        what: &str,
    ) -> Result<sys::nvmlGpuInstanceInfo_t> {
        let f = sym(&self.lib().nvmlGpuInstanceGetInfo, "nvmlGpuInstanceGetInfo")?;
        // SAFETY: plain C struct (pointers and integers); all-zero is valid.
        let mut info: sys::nvmlGpuInstanceInfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid GI handle and out pointer.
        check(unsafe { f(gi, &mut info) }, || format!("reading {what}"))?;
        Ok(info)
    }

    /// The compute-instance profiles a GPU instance supports: (profile id, slice count, max instances).
    fn ci_profiles(&self, gi: sys::nvmlGpuInstance_t) -> Result<Vec<(u32, u32, u32)>> {
        let f = sym(
            &self.lib().nvmlGpuInstanceGetComputeInstanceProfileInfo,
            "nvmlGpuInstanceGetComputeInstanceProfileInfo",
        )?;
        let mut out = Vec::new();
        for idx in 0..sys::NVML_COMPUTE_INSTANCE_PROFILE_COUNT {
            // SAFETY: plain C struct of integers.
            let mut info: sys::nvmlComputeInstanceProfileInfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: valid GI handle and out pointer.
            let c = unsafe {
                f(
                    gi,
                    idx,
                    sys::NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED,
                    &mut info,
                )
            };
            if c == sys::nvmlReturn_enum_NVML_SUCCESS {
                out.push((info.id, info.sliceCount, info.instanceCount));
            }
        }
        Ok(out)
    }

    fn compute_instances(&self, gi: sys::nvmlGpuInstance_t) -> Result<Vec<ComputeInstance>> {
        let lib = self.lib();
        let list = sym(
            &lib.nvmlGpuInstanceGetComputeInstances,
            "nvmlGpuInstanceGetComputeInstances",
        )?;
        let info_f = sym(
            &lib.nvmlComputeInstanceGetInfo_v2,
            "nvmlComputeInstanceGetInfo_v2",
        )?;
        let mut out = Vec::new();
        for (pid, slices, max) in self.ci_profiles(gi)? {
            let mut buf: Vec<sys::nvmlComputeInstance_t> =
                vec![std::ptr::null_mut(); max.max(1) as usize];
            let mut count: c_uint = 0;
            // SAFETY: the buffer holds `max` handles, the most NVML returns for the profile.
            check(
                unsafe { list(gi, pid, buf.as_mut_ptr(), &mut count) },
                || format!("listing the compute instances of profile {pid}"),
            )?;
            buf.truncate(count as usize);
            for ci in buf {
                // SAFETY: plain C struct; all-zero is valid.
                let mut info: sys::nvmlComputeInstanceInfo_t = unsafe { std::mem::zeroed() };
                // SAFETY: handle from NVML, valid out pointer.
                check(unsafe { info_f(ci, &mut info) }, || {
                    "reading a compute instance".into()
                })?;
                out.push(ComputeInstance {
                    id: info.id,
                    profile_id: info.profileId,
                    compute_slices: slices,
                    placement: Placement {
                        start: info.placement.start,
                        size: info.placement.size,
                    },
                });
            }
        }
        out.sort_by_key(|c| c.id);
        Ok(out)
    }
}

impl GpuBackend for NvmlBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nvml
    }

    fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let f = sym(&self.lib().nvmlDeviceGetCount_v2, "nvmlDeviceGetCount_v2")?;
        let mut n: c_uint = 0;
        // SAFETY: valid out pointer.
        check(unsafe { f(&mut n) }, || "counting GPUs".into())?;
        (0..n).map(|i| self.device_info(i)).collect()
    }

    fn versions(&self) -> Result<DriverVersions> {
        let lib = self.lib();
        let driver_f = sym(
            &lib.nvmlSystemGetDriverVersion,
            "nvmlSystemGetDriverVersion",
        )?;
        let nvml_f = sym(&lib.nvmlSystemGetNVMLVersion, "nvmlSystemGetNVMLVersion")?;
        let mut driver = [0 as c_char; sys::NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE as usize];
        // SAFETY: the buffer is as long as the length passed.
        check(
            unsafe {
                driver_f(
                    driver.as_mut_ptr(),
                    sys::NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE,
                )
            },
            || "reading the driver version".into(),
        )?;
        let mut nvml = [0 as c_char; sys::NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE as usize];
        // SAFETY: as above.
        check(
            unsafe { nvml_f(nvml.as_mut_ptr(), sys::NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE) },
            || "reading the NVML version".into(),
        )?;
        Ok(DriverVersions {
            driver: c_string(&driver),
            nvml: c_string(&nvml),
        })
    }

    fn profiles(&self, device: u32) -> Result<Vec<ProfileInfo>> {
        let h = self.handle(device)?;
        // NVML answers profile and placement queries with MIG mode off too (as `nvidia-smi mig -lgip` does).
        let lib = self.lib();
        let v2 = lib.nvmlDeviceGetGpuInstanceProfileInfoV.as_ref().ok();
        let v1 = sym(
            &lib.nvmlDeviceGetGpuInstanceProfileInfo,
            "nvmlDeviceGetGpuInstanceProfileInfo",
        )?;
        let model = self.device_info(device)?.model();
        let mut out: Vec<ProfileInfo> = Vec::new();
        for idx in 0..sys::NVML_GPU_INSTANCE_PROFILE_COUNT {
            let (id, slices, count, mem, name) = match v2 {
                Some(f) => {
                    // SAFETY: plain C struct; all-zero is valid.
                    let mut info: sys::nvmlGpuInstanceProfileInfo_v2_t =
                        unsafe { std::mem::zeroed() };
                    info.version = profile_info_v2_version();
                    // SAFETY: valid handle, out pointer with its version set.
                    let c = unsafe { f(h, idx, &mut info) };
                    if c != sys::nvmlReturn_enum_NVML_SUCCESS {
                        continue;
                    }
                    (
                        info.id,
                        info.sliceCount,
                        info.instanceCount,
                        info.memorySizeMB,
                        profile_name(&c_string(&info.name)),
                    )
                }
                None => {
                    // SAFETY: plain C struct; all-zero is valid.
                    let mut info: sys::nvmlGpuInstanceProfileInfo_t = unsafe { std::mem::zeroed() };
                    // SAFETY: valid handle and out pointer.
                    let c = unsafe { v1(h, idx, &mut info) };
                    if c != sys::nvmlReturn_enum_NVML_SUCCESS {
                        continue;
                    }
                    let name = model.and_then(|m| m.profile_by_id(info.id)).map_or_else(
                        || format!("{}g (ID {})", info.sliceCount, info.id),
                        |p| p.name.to_owned(),
                    );
                    (
                        info.id,
                        info.sliceCount,
                        info.instanceCount,
                        info.memorySizeMB,
                        name,
                    )
                }
            };
            if out.iter().any(|p| p.id == id) {
                continue;
            }
            out.push(ProfileInfo {
                id,
                name,
                compute_slices: slices,
                max_count: count,
                memory_mib: mem,
                // A driver without placements support still lists the profile.
                placements: self.placements(h, device, id).unwrap_or_default(),
            });
        }
        Ok(out)
    }

    fn gpu_instances(&self, device: u32) -> Result<Vec<GpuInstance>> {
        let h = self.handle(device)?;
        if !self.mig_mode(h, device)?.current {
            return Ok(Vec::new());
        }
        let f = sym(
            &self.lib().nvmlDeviceGetGpuInstances,
            "nvmlDeviceGetGpuInstances",
        )?;
        let mut out = Vec::new();
        for p in self.profiles(device)? {
            let mut buf: Vec<sys::nvmlGpuInstance_t> =
                vec![std::ptr::null_mut(); p.max_count.max(1) as usize];
            let mut count: c_uint = 0;
            // SAFETY: the buffer holds `max_count` handles, the most NVML returns for the profile.
            check(unsafe { f(h, p.id, buf.as_mut_ptr(), &mut count) }, || {
                format!("listing the {} GPU instances of GPU {device}", p.name)
            })?;
            buf.truncate(count as usize);
            for gi in buf {
                let info = self.gi_info(gi, &format!("a GPU instance of GPU {device}"))?;
                out.push(GpuInstance {
                    id: info.id,
                    profile_id: info.profileId,
                    placement: Placement {
                        start: info.placement.start,
                        size: info.placement.size,
                    },
                    compute_instances: self.compute_instances(gi)?,
                });
            }
        }
        out.sort_by_key(|g| g.id);
        Ok(out)
    }

    fn create_gpu_instance(&self, device: u32, profile_id: u32, start: u32) -> Result<GpuInstance> {
        let h = self.handle(device)?;
        let size = self
            .placements(h, device, profile_id)?
            .iter()
            .find(|p| p.start == start)
            .map(|p| p.size)
            .ok_or_else(|| {
                GpuError::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "GPU {device} offers no placement at memory slice {start} for profile ID {profile_id} \
                         (see `nvidia-smi mig -lgipp`)."
                    ),
                )
            })?;
        let f = sym(
            &self.lib().nvmlDeviceCreateGpuInstanceWithPlacement,
            "nvmlDeviceCreateGpuInstanceWithPlacement",
        )?;
        let placement = sys::nvmlGpuInstancePlacement_t { start, size };
        let mut gi: sys::nvmlGpuInstance_t = std::ptr::null_mut();
        // SAFETY: valid handle, placement and out pointer.
        check(unsafe { f(h, profile_id, &placement, &mut gi) }, || {
            format!("creating a GPU instance of profile ID {profile_id} at memory slice {start} on GPU {device}")
        })?;
        let info = self.gi_info(gi, "the new GPU instance")?;
        Ok(GpuInstance {
            id: info.id,
            profile_id: info.profileId,
            placement: Placement {
                start: info.placement.start,
                size: info.placement.size,
            },
            compute_instances: Vec::new(),
        })
    }

    fn create_compute_instance(
        &self,
        device: u32,
        gi_id: u32,
        compute_slices: Option<u32>,
    ) -> Result<ComputeInstance> {
        let h = self.handle(device)?;
        let gi = self.gi_handle(h, device, gi_id)?;
        let profiles = self.ci_profiles(gi)?;
        let chosen = match compute_slices {
            None => profiles.iter().max_by_key(|p| p.1),
            Some(s) => profiles.iter().find(|p| p.1 == s),
        }
        .copied()
        .ok_or_else(|| {
            GpuError::new(
                ErrorKind::NotSupported,
                format!(
                    "GPU instance {gi_id} on GPU {device} has no compute profile with {} compute slices; it offers \
                     {:?}.",
                    compute_slices.unwrap_or(0),
                    profiles.iter().map(|p| p.1).collect::<Vec<_>>()
                ),
            )
        })?;
        let f = sym(
            &self.lib().nvmlGpuInstanceCreateComputeInstance,
            "nvmlGpuInstanceCreateComputeInstance",
        )?;
        let mut ci: sys::nvmlComputeInstance_t = std::ptr::null_mut();
        // SAFETY: valid GI handle and out pointer.
        check(unsafe { f(gi, chosen.0, &mut ci) }, || {
            format!(
                "creating a {}-slice compute instance in GPU instance {gi_id} on GPU {device}",
                chosen.1
            )
        })?;
        let info_f = sym(
            &self.lib().nvmlComputeInstanceGetInfo_v2,
            "nvmlComputeInstanceGetInfo_v2",
        )?;
        // SAFETY: plain C struct; all-zero is valid.
        let mut info: sys::nvmlComputeInstanceInfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: handle from NVML, valid out pointer.
        check(unsafe { info_f(ci, &mut info) }, || {
            "reading the new compute instance".into()
        })?;
        Ok(ComputeInstance {
            id: info.id,
            profile_id: info.profileId,
            compute_slices: chosen.1,
            placement: Placement {
                start: info.placement.start,
                size: info.placement.size,
            },
        })
    }

    fn destroy_compute_instance(&self, device: u32, gi_id: u32, ci_id: u32) -> Result<()> {
        let h = self.handle(device)?;
        let gi = self.gi_handle(h, device, gi_id)?;
        let by_id = sym(
            &self.lib().nvmlGpuInstanceGetComputeInstanceById,
            "nvmlGpuInstanceGetComputeInstanceById",
        )?;
        let mut ci: sys::nvmlComputeInstance_t = std::ptr::null_mut();
        // SAFETY: valid GI handle and out pointer.
        check(unsafe { by_id(gi, ci_id, &mut ci) }, || {
            format!("looking up compute instance {ci_id} of GPU instance {gi_id} on GPU {device}")
        })?;
        let f = sym(
            &self.lib().nvmlComputeInstanceDestroy,
            "nvmlComputeInstanceDestroy",
        )?;
        // SAFETY: handle from NVML.
        check(unsafe { f(ci) }, || {
            format!("destroying compute instance {ci_id} of GPU instance {gi_id} on GPU {device}")
        })
    }

    fn destroy_gpu_instance(&self, device: u32, gi_id: u32) -> Result<()> {
        let h = self.handle(device)?;
        let gi = self.gi_handle(h, device, gi_id)?;
        let f = sym(&self.lib().nvmlGpuInstanceDestroy, "nvmlGpuInstanceDestroy")?;
        // SAFETY: handle from NVML.
        check(unsafe { f(gi) }, || {
            format!("destroying GPU instance {gi_id} on GPU {device}")
        })
    }

    fn mig_devices(&self, device: u32) -> Result<Vec<MigDevice>> {
        let h = self.handle(device)?;
        let lib = self.lib();
        let max_f = sym(
            &lib.nvmlDeviceGetMaxMigDeviceCount,
            "nvmlDeviceGetMaxMigDeviceCount",
        )?;
        let by_index = sym(
            &lib.nvmlDeviceGetMigDeviceHandleByIndex,
            "nvmlDeviceGetMigDeviceHandleByIndex",
        )?;
        let gi_f = sym(
            &lib.nvmlDeviceGetGpuInstanceId,
            "nvmlDeviceGetGpuInstanceId",
        )?;
        let ci_f = sym(
            &lib.nvmlDeviceGetComputeInstanceId,
            "nvmlDeviceGetComputeInstanceId",
        )?;
        let uuid_f = sym(&lib.nvmlDeviceGetUUID, "nvmlDeviceGetUUID")?;
        let mut max: c_uint = 0;
        // SAFETY: valid handle and out pointer.
        check(unsafe { max_f(h, &mut max) }, || {
            format!("counting the MIG devices of GPU {device}")
        })?;
        let mut out = Vec::new();
        for i in 0..max {
            let mut mig: sys::nvmlDevice_t = std::ptr::null_mut();
            // SAFETY: valid handle and out pointer.
            let c = unsafe { by_index(h, i, &mut mig) };
            if c == code::NOT_FOUND || c == code::INVALID_ARGUMENT {
                continue;
            }
            check(c, || format!("opening MIG device {i} of GPU {device}"))?;
            let (mut gi, mut ci): (c_uint, c_uint) = (0, 0);
            // SAFETY: MIG device handle from NVML, valid out pointers.
            check(unsafe { gi_f(mig, &mut gi) }, || {
                format!("reading MIG device {i} of GPU {device}")
            })?;
            // SAFETY: as above.
            check(unsafe { ci_f(mig, &mut ci) }, || {
                format!("reading MIG device {i} of GPU {device}")
            })?;
            let mut uuid = [0 as c_char; sys::NVML_DEVICE_UUID_V2_BUFFER_SIZE as usize];
            // SAFETY: the buffer is as long as the length passed.
            check(
                unsafe { uuid_f(mig, uuid.as_mut_ptr(), sys::NVML_DEVICE_UUID_V2_BUFFER_SIZE) },
                || format!("reading the UUID of MIG device {i} of GPU {device}"),
            )?;
            out.push(MigDevice {
                gi_id: gi,
                ci_id: ci,
                uuid: c_string(&uuid),
            });
        }
        out.sort_by_key(|m| (m.gi_id, m.ci_id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_without_the_driver_is_a_clear_error() {
        // No GPU on the build machines: opening fails with Unavailable, never a panic. On a GPU host it opens.
        match NvmlBackend::open() {
            Ok(b) => assert_eq!(b.kind(), BackendKind::Nvml),
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
                assert!(
                    e.message.contains("libnvidia-ml.so.1") || e.message.contains("driver"),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn wrapper_errors_map_to_kinds() {
        assert_eq!(
            init_error(&NvmlError::UnexpectedVariant(23)).kind,
            ErrorKind::InsufficientResources
        );
        assert_eq!(
            init_error(&NvmlError::DriverNotLoaded).kind,
            ErrorKind::Unavailable
        );
        assert_eq!(
            init_error(&NvmlError::NoPermission).kind,
            ErrorKind::NoPermission
        );
        assert_eq!(init_error(&NvmlError::InUse).kind, ErrorKind::InUse);
        assert_eq!(
            init_error(&NvmlError::ResetRequired).kind,
            ErrorKind::ResetRequired
        );
        assert_eq!(
            init_error(&NvmlError::FailedToLoadSymbol("x".into())).kind,
            ErrorKind::Unavailable
        );
    }

    #[test]
    fn pure_helpers() {
        assert_eq!(profile_name("MIG 1g.10gb"), "1g.10gb");
        assert_eq!(profile_name("1g.10gb+me"), "1g.10gb+me");
        let buf: Vec<c_char> = b"GPU-1\0junk".iter().map(|b| *b as c_char).collect();
        assert_eq!(c_string(&buf), "GPU-1");
        assert_eq!(profile_info_v2_version() >> 24, 2);
        let missing: std::result::Result<u8, String> = Err("undefined symbol".into());
        let e = sym(&missing, "nvmlDeviceCreateGpuInstanceWithPlacement").unwrap_err();
        assert!(
            e.message
                .contains("nvmlDeviceCreateGpuInstanceWithPlacement"),
            "{e}"
        );
    }
}
