//! GPU catalog and planner (see ARCHITECTURE.md).
//!
//! - [`catalog`]: MIG profile tables per GPU model, forgiving model lookup, profile
//!   suggestions.
//! - [`placement`]: the geometry rules of one GPU (which sets of GPU instances fit where).
//! - [`plan`](mod@plan): the exact, deterministic planner that spreads the clusters' MIG instances and
//!   whole GPUs over the devices.
//! - [`vgpu`]: NVIDIA's MIG-backed vGPU type names per model and board (how a slice reaches a VM; UNVERIFIED).
//!
//! Everything here is pure: no IO, no NVML.

pub mod catalog;
pub mod placement;
pub mod plan;
pub mod vgpu;

pub use catalog::{lookup_model, model_by_pci_device_id, suggest_profile, GpuModel, Profile};
pub use plan::{
    plan, ClusterDemand, DeviceUse, GpuPlan, PlanDevice, PlanError, PlanInput, PlannedInstance,
    WholeGpu,
};
