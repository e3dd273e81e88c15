//! From `global.gpu_allocation` to the planner's input: which device is used how, and what
//! each cluster asks for. The planner itself ([`crate::gpu::plan`]) knows nothing of YAML.

use crate::config::model::{ClusterConfig, DeviceMode, Strategy, CLUSTER_KEYS};
use crate::gpu::catalog;
use crate::gpu::plan::{ClusterDemand, DeviceUse, GpuPlan, PlanDevice, PlanError, PlanInput};

/// How a device is used under a strategy.
pub fn device_use(strategy: Strategy, mig_capable: bool, mode: Option<DeviceMode>) -> DeviceUse {
    match (strategy, mode) {
        (Strategy::Whole, _) => DeviceUse::Whole,
        (Strategy::Mig, _) if mig_capable => DeviceUse::Mig,
        (Strategy::Mig, _) => DeviceUse::Unused,
        (Strategy::Hybrid, Some(DeviceMode::Whole)) => DeviceUse::Whole,
        (Strategy::Hybrid, _) if mig_capable => DeviceUse::Mig,
        (Strategy::Hybrid, _) => DeviceUse::Whole,
    }
}

/// The planner's input for a configuration (empty when there is no `gpu_allocation`).
pub fn plan_input(config: &ClusterConfig) -> PlanInput {
    let Some(alloc) = &config.global.gpu_allocation else {
        return PlanInput {
            devices: Vec::new(),
            clusters: Vec::new(),
        };
    };
    let devices = alloc
        .devices
        .iter()
        .map(|d| PlanDevice {
            id: d.id.clone(),
            model: catalog::lookup_model(&d.model),
            use_: device_use(alloc.strategy, d.mig_capable, d.mode),
            allowed_profiles: d.allowed_mig_profiles.clone(),
        })
        .collect();
    let mut clusters = Vec::new();
    for name in CLUSTER_KEYS {
        let mig = alloc
            .mig_slices
            .as_ref()
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0);
        let whole = alloc
            .whole_gpus
            .as_ref()
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or(0);
        if mig == 0 && whole == 0 {
            continue;
        }
        clusters.push(ClusterDemand {
            name: name.to_owned(),
            mig_instances: mig,
            allowed_profiles: alloc
                .mig_profiles
                .as_ref()
                .and_then(|m| m.get(name))
                .cloned(),
            whole_gpus: whole,
        });
    }
    PlanInput { devices, clusters }
}

/// Plans the GPU units of a configuration.
pub fn plan(config: &ClusterConfig) -> Result<GpuPlan, PlanError> {
    crate::gpu::plan::plan(&plan_input(config))
}
