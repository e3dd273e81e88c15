//! The rules for how GPU units reach the VMs (`global.gpu_allocation.attach`), over the model and the layout of
//! its GPU plan. Rule ids: `gpu.vgpu-type-unknown` (a named vGPU type a GPU's model does not have),
//! `gpu.vgpus-per-vm` (a VM given more MIG-backed vGPUs than NVIDIA allows in one VM). A unit no VM takes is
//! `gpu.units-unused` in [`crate::config::rules`]. Every catalogued model has a vGPU table
//! ([`crate::gpu::vgpu`]) and the planner refuses MIG on uncatalogued ones, so every planned slice has a type.

use crate::config::gpu::device_use;
use crate::config::model::{ClusterConfig, CLUSTER_KEYS};
use crate::config::rules::groups;
use crate::config::yaml::escape_token;
use crate::diag::Diagnostic;
use crate::gpu::plan::{DeviceUse, GpuPlan};
use crate::gpu::{catalog, vgpu};
use crate::layout::{Layout, Role, UnitKind};

/// The checks that need only the model: every named vGPU type exists on the model of each MIG GPU that has
/// the profile it is named for, and the profile exists on some MIG GPU.
pub fn check_named_types(config: &ClusterConfig, out: &mut Vec<Diagnostic>) {
    let Some(alloc) = &config.global.gpu_allocation else {
        return;
    };
    for cluster in CLUSTER_KEYS {
        let Some(types) = config.unit_attach(cluster).vgpu_types else {
            continue;
        };
        for (profile, type_name) in &types {
            let at = format!(
                "/global/gpu_allocation/attach/{cluster}/vgpu_types/{}",
                escape_token(profile)
            );
            let mig_models: Vec<(&str, Option<&'static catalog::GpuModel>)> = alloc
                .devices
                .iter()
                .filter(|d| device_use(alloc.strategy, d.mig_capable, d.mode) == DeviceUse::Mig)
                .map(|d| (d.model.as_str(), catalog::lookup_model(&d.model)))
                .collect();
            let with_profile: Vec<(&str, &'static catalog::GpuModel)> = mig_models
                .iter()
                .filter_map(|(name, m)| m.map(|m| (*name, m)))
                .filter(|(_, m)| m.profile(profile).is_some())
                .collect();
            let unknown_model = mig_models.iter().any(|(_, m)| m.is_none());
            if with_profile.is_empty() {
                if !unknown_model {
                    out.push(
                        Diagnostic::error(
                            "gpu.unknown-profile",
                            at,
                            format!("vGPU type `{type_name}` is named for MIG profile `{profile}`, which no MIG GPU of this file has"),
                        )
                        .with_hint("name the type under the profile the GPU's model has (see `hsw-cli gpu plan`), or remove the entry"),
                    );
                }
                continue;
            }
            for (device_model, model) in with_profile {
                if vgpu::find_type(model, type_name).is_some() {
                    continue;
                }
                let offered: Vec<String> = vgpu::boards(model)
                    .iter()
                    .filter_map(|b| vgpu::type_name(b, model.profile(profile)?))
                    .collect();
                out.push(
                    Diagnostic::error(
                        "gpu.vgpu-type-unknown",
                        at.clone(),
                        format!(
                            "vGPU type `{type_name}` is not a MIG-backed type of {} (`{device_model}`), whose `{profile}` slices cluster `{cluster}` may get",
                            model.display_name
                        ),
                    )
                    .with_label("not a type of this GPU model")
                    .with_hint(format!(
                        "{} offers for `{profile}`: {} (hsw's catalog, UNVERIFIED: `nvidia-smi vgpu -s` or the mdev types' `name` files show the host's)",
                        model.display_name,
                        offered.join(", ")
                    )),
                );
            }
        }
    }
}

/// The check over the layout of a plan: no VM gets more MIG-backed vGPUs than allowed.
pub fn check_layout(config: &ClusterConfig, plan: &GpuPlan, out: &mut Vec<Diagnostic>) {
    let layout = Layout::new(config, plan);
    for g in groups(config) {
        let Some(role) = Role::parse(g.role) else {
            continue;
        };
        let worst = layout
            .with_role(role)
            .map(|vm| {
                vm.gpu_units
                    .iter()
                    .filter(|u| matches!(u.kind, UnitKind::Mig | UnitKind::Mdev))
                    .count()
            })
            .max()
            .unwrap_or(0);
        if worst as u64 > u64::from(vgpu::MAX_MIG_VGPUS_PER_VM) {
            out.push(
                Diagnostic::error(
                    "gpu.vgpus-per-vm",
                    format!("{}/gpus_per_node", g.pointer),
                    format!(
                        "a `{}` VM would get {worst} MIG slices, but a MIG slice reaches a VM as a MIG-backed vGPU and NVIDIA allows {} per VM",
                        g.role,
                        vgpu::MAX_MIG_VGPUS_PER_VM
                    ),
                )
                .with_hint(format!(
                    "set `gpus_per_node: {}` and raise `count`, or give `{}` whole GPUs (passthrough: several per VM), or fewer, larger slices",
                    vgpu::MAX_MIG_VGPUS_PER_VM,
                    g.cluster
                )),
            );
        }
    }
}
