//! `hsw_gpus`: the GPU inventory, as `hsw-cli gpu discover` prints it: devices, MIG mode, profiles with their
//! placements, existing MIG instances, vGPU types and vGPUs, and which backend answered.

use hsw_gpu_backend::inventory::{discover, Inventory};

use crate::framework::{
    async_trait, Attribute, Block, Context, DataSource, Diagnostics, Schema, Type, Value,
};

use super::gpu::{blocking, diag, mdev_backend, MigCell};
use super::Shared;

/// The `hsw_gpus` data source.
#[derive(Debug)]
pub struct GpusDataSource {
    shared: Shared,
    mig: MigCell,
}

impl GpusDataSource {
    /// The data source, reaching the provider's configuration through `shared`.
    pub fn new(shared: Shared) -> GpusDataSource {
        GpusDataSource {
            shared,
            mig: MigCell::default(),
        }
    }
}

fn profile_type() -> Type {
    Type::object([
        ("id", Type::Number),
        ("name", Type::String),
        ("compute_slices", Type::Number),
        ("max_count", Type::Number),
        ("memory_mib", Type::Number),
        ("placement_starts", Type::list(Type::Number)),
        ("placement_size", Type::Number),
    ])
}

fn instance_type() -> Type {
    Type::object([
        ("gi_id", Type::Number),
        ("profile", Type::String),
        ("profile_id", Type::Number),
        ("placement_start", Type::Number),
        ("placement_size", Type::Number),
        ("ci_id", Type::Number),
        ("mig_device_uuid", Type::String),
    ])
}

fn device_type() -> Type {
    Type::object([
        ("index", Type::Number),
        ("uuid", Type::String),
        ("name", Type::String),
        ("pci_address", Type::String),
        ("pci_device_id", Type::String),
        ("model", Type::String),
        ("memory_mib", Type::Number),
        ("mig_enabled", Type::Bool),
        ("mig_pending", Type::Bool),
        ("profiles", Type::list(profile_type())),
        ("instances", Type::list(instance_type())),
    ])
}

fn vgpu_type_type() -> Type {
    Type::object([
        ("parent", Type::String),
        ("id", Type::String),
        ("name", Type::String),
        ("description", Type::String),
        ("available_instances", Type::Number),
        ("flavor", Type::String),
    ])
}

fn vgpu_type() -> Type {
    Type::object([
        ("id", Type::String),
        ("parent", Type::String),
        ("uuid", Type::String),
        ("type_id", Type::String),
        ("type_name", Type::String),
        ("flavor", Type::String),
        ("persistent", Type::Bool),
    ])
}

/// The schema of `hsw_gpus`.
pub fn schema() -> Schema {
    Schema::new(
        Block::new()
            .describe(
                "The host's GPUs as the provider's GPU backend sees them: devices with their catalog model, MIG mode, \
                 MIG profiles and placements, existing MIG instances, and the vGPU types and vGPUs in sysfs. \
                 `backend` says whether NVML or the simulated backend answered.",
            )
            .attribute(Attribute::computed("id", Type::String).describe("The backend name."))
            .attribute(Attribute::computed("backend", Type::String).describe("`nvml` or `simulated`."))
            .attribute(Attribute::computed("backend_reason", Type::String).describe("Why `gpu_backend = \"auto\"` chose the backend; null when it was chosen explicitly."))
            .attribute(Attribute::computed("devices", Type::list(device_type())).describe(
                "The GPUs: `index`, `uuid`, `name`, `pci_address`, `pci_device_id` (`0x20b2`), `model` (catalog key such \
                 as `a100-80gb`, null when not catalogued), `memory_mib`, `mig_enabled`, `mig_pending` (after the next \
                 reset), `profiles` (`id`, `name`, `compute_slices`, `max_count`, `memory_mib`, `placement_starts`, \
                 `placement_size`) and `instances` (`gi_id`, `profile`, `profile_id`, `placement_start`, \
                 `placement_size`, `ci_id`, `mig_device_uuid`).",
            ))
            .attribute(Attribute::computed("vgpu_types", Type::list(vgpu_type_type())).describe(
                "vGPU types offered: `parent`, `id` (`nvidia-NNN` or vendor type number), `name`, `description`, \
                 `available_instances`, `flavor` (`mdev` or `vendor_vfio`).",
            ))
            .attribute(Attribute::computed("vgpus", Type::list(vgpu_type())).describe(
                "vGPUs that exist: `id`, `parent`, `uuid`, `type_id`, `type_name`, `flavor`, `persistent`.",
            ))
            .attribute(Attribute::computed("json", Type::String).describe("The whole inventory as JSON (the `hsw-cli gpu discover --format json` document).")),
    )
}

fn num_list(xs: impl IntoIterator<Item = u32>) -> Value {
    Value::List(xs.into_iter().map(Value::from).collect())
}

/// The data source's value for an inventory.
pub fn inventory_value(inv: &Inventory) -> Value {
    let devices = inv
        .devices
        .iter()
        .map(|d| {
            let profiles = d
                .profiles
                .iter()
                .map(|p| {
                    Value::object([
                        ("id", Value::from(p.id)),
                        ("name", Value::from(p.name.clone())),
                        ("compute_slices", Value::from(p.compute_slices)),
                        ("max_count", Value::from(p.max_count)),
                        ("memory_mib", Value::from(p.memory_mib)),
                        (
                            "placement_starts",
                            num_list(p.placements.iter().map(|x| x.start)),
                        ),
                        ("placement_size", Value::from(p.placement_size())),
                    ])
                })
                .collect();
            let instances = d
                .gpu_instances
                .iter()
                .map(|g| {
                    let ci = g.compute_instances.first();
                    Value::object([
                        ("gi_id", Value::from(g.gi_id)),
                        ("profile", Value::from(g.profile.clone())),
                        ("profile_id", Value::from(g.profile_id)),
                        ("placement_start", Value::from(g.placement.start)),
                        ("placement_size", Value::from(g.placement.size)),
                        ("ci_id", Value::from(ci.map(|c| c.ci_id))),
                        (
                            "mig_device_uuid",
                            Value::from(ci.and_then(|c| c.mig_device_uuid.clone())),
                        ),
                    ])
                })
                .collect();
            Value::object([
                ("index", Value::from(d.index)),
                ("uuid", Value::from(d.uuid.clone())),
                ("name", Value::from(d.name.clone())),
                ("pci_address", Value::from(d.pci_address.clone())),
                ("pci_device_id", Value::from(d.pci_device_id.clone())),
                ("model", Value::from(d.model.clone())),
                ("memory_mib", Value::from(d.memory_mib)),
                ("mig_enabled", Value::from(d.mig_current)),
                ("mig_pending", Value::from(d.mig_pending)),
                ("profiles", Value::List(profiles)),
                ("instances", Value::List(instances)),
            ])
        })
        .collect();
    let types = inv
        .vgpu_types
        .iter()
        .map(|t| {
            Value::object([
                ("parent", Value::from(t.parent.clone())),
                ("id", Value::from(t.id.clone())),
                ("name", Value::from(t.name.clone())),
                ("description", Value::from(t.description.clone())),
                ("available_instances", Value::from(t.available_instances)),
                ("flavor", Value::from(t.flavor.as_str())),
            ])
        })
        .collect();
    let vgpus = inv
        .vgpus
        .iter()
        .map(|v| {
            Value::object([
                ("id", Value::from(v.id())),
                ("parent", Value::from(v.parent.clone())),
                ("uuid", Value::from(v.uuid.clone())),
                ("type_id", Value::from(v.type_id.clone())),
                ("type_name", Value::from(v.type_name.clone())),
                ("flavor", Value::from(v.flavor.as_str())),
                ("persistent", Value::from(v.persistent)),
            ])
        })
        .collect();
    schema()
        .block
        .null_object()
        .with("id", inv.backend.clone())
        .with("backend", inv.backend.clone())
        .with("backend_reason", inv.backend_reason.clone())
        .with("devices", Value::List(devices))
        .with("vgpu_types", Value::List(types))
        .with("vgpus", Value::List(vgpus))
        .with(
            "json",
            serde_json::to_string_pretty(inv).unwrap_or_default(),
        )
}

#[async_trait]
impl DataSource for GpusDataSource {
    fn type_name(&self) -> &str {
        "hsw_gpus"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, _ctx: &Context, _config: &Value) -> Result<Value, Diagnostics> {
        let mig = self.mig.get(&self.shared).await?;
        let m = mdev_backend(&self.shared)?;
        let inv = blocking(move || discover(mig.backend.as_ref(), mig.reason.clone(), Some(&m)))
            .await?
            .map_err(|e| diag(e, None))?;
        Ok(inventory_value(&inv))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_well_formed() {
        schema().check().unwrap();
    }
}
