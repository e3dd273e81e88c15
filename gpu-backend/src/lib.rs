//! GPU backends for hsw: MIG through NVML or a faithful simulation, vGPUs through sysfs, and host-level locks.
//!
//! Why a crate of its own: both `hsw-cli` (`gpu discover`, `gpu cleanup`) and `terraform-provider-hsw`
//! (`hsw_mig_instance`, `hsw_mdev`, `hsw_gpus`) drive the GPUs, and `hsw-core` does no IO. The MIG catalog and
//! placement rules stay in `hsw-core` (`hsw_core::gpu`); this crate only applies them.
//!
//! - [`mig`]: the [`GpuBackend`] trait and its values;
//! - [`nvml`]: the NVIDIA driver (`nvml-wrapper` 0.13 to load, raw `nvml-wrapper-sys` calls for the rest);
//! - [`simulated`]: GPUs in a JSON file with the catalog's rules and NVML's error kinds, shared across processes;
//! - [`ops`]: choosing a backend (`auto` | `nvml` | `simulated`), and MIG instances (one GPU instance + one
//!   compute instance) created under the GPU's host-level lock with rollback;
//! - [`mdev`]: the [`MdevBackend`] trait over a rooted sysfs (classic mdev and NVIDIA vendor VFIO), mdevctl
//!   persistence, and fake trees with a fake kernel for tests;
//! - [`hostcheck`]: the facts `hsw-cli check` judges about real GPUs (driver and NVML versions, MIG mode, the
//!   vGPU types a GPU and its VFs offer, passthrough GPUs' IOMMU groups), read only;
//! - [`iommu`]: IOMMU groups from a rooted sysfs (whether a GPU can be passed through on its own);
//! - [`vf`]: the SR-IOV virtual function that parents a MIG slice's vGPU, found from sysfs at apply time;
//! - [`lock`]: hsw's one `flock` lock (0600 files, never opened through a link): per GPU
//!   (`<lock dir>/gpu-<pci>.lock`), and the provider's per-name create locks;
//! - [`intent`]: the record of a MIG create in progress (`<lock dir>/gpu-<pci>.intent.json`), so that a create
//!   killed between making a GPU instance and answering leaves no orphan the next create or destroy misses;
//! - [`inventory`]: the discovery report;
//! - [`error`]: [`GpuError`] (kind + sentence).
//!
//! Invariants: only this crate (and nothing in `hsw-core`) touches NVML or vGPU sysfs; every path under sysfs or
//! /etc comes from a [`mdev::SysfsRoot`]; nothing here changes MIG mode or resets a GPU.

pub mod error;
pub mod hostcheck;
pub mod intent;
pub mod inventory;
pub mod iommu;
pub mod lock;
pub mod mdev;
pub mod mig;
pub mod nvml;
pub mod ops;
pub mod simulated;
pub mod vf;

pub use error::{ErrorKind, GpuError};
pub use mdev::MdevBackend;
pub use mig::GpuBackend;
