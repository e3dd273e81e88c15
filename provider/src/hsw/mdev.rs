//! `hsw_mdev`: a vGPU on a GPU or SR-IOV VF: a classic mediated device (UUID), or an NVIDIA vendor-specific VFIO
//! vGPU (the VF itself). Types are chosen by name. `persistent` (mdevctl's `/etc/mdevctl.d`) changes in place;
//! everything else replaces the vGPU. A vGPU removed behind Terraform's back is created again. Import by UUID
//! (or by VF PCI address for vendor VFIO).
//!
//! A MIG-backed vGPU may name its `gpu_instance` (an `hsw_mig_instance` id) instead of its `parent`: the parent is
//! then the VF the driver offers for it, found at apply time ([`hsw_gpu_backend::vf::parent_for`]) under the
//! GPU's host-level lock, so two creates never pick the same VF. Referencing the MIG instance also orders
//! Terraform's graph: MIG instance, then vGPU, then the VM that holds it; destroy runs the other way.

use hsw_gpu_backend::lock::GpuLock;
use hsw_gpu_backend::mdev::{same_type, MdevBackend, Vgpu, VgpuFlavor};
use hsw_gpu_backend::mig::normalize_pci;
use hsw_gpu_backend::vf::parent_for;
use hsw_gpu_backend::ErrorKind;

use crate::framework::{
    async_trait, AttrPath, Attribute, Block, Context, Diagnostic, Diagnostics, PlanOutcome,
    PlanRequest, Resource, Schema, Type, Value,
};

use super::gpu::{blocking, diag, mdev_backend, MigCell};
use super::planning::{default_attr, plan_with};
use super::values::{opt_str, req_str};
use super::{validate, Shared};

/// The `hsw_mdev` resource.
#[derive(Debug)]
pub struct MdevResource {
    shared: Shared,
    mig: MigCell,
}

impl MdevResource {
    /// The resource, reaching the provider's configuration through `shared`.
    pub fn new(shared: Shared) -> MdevResource {
        MdevResource {
            shared,
            mig: MigCell::default(),
        }
    }
}

/// The schema of `hsw_mdev`.
pub fn schema() -> Schema {
    Schema::new(
        Block::new()
            .describe(
                "A vGPU: a mediated device (mdev) of an NVIDIA vGPU type on a GPU or SR-IOV virtual function, or, \
                 with vGPU 17+ on Ada/Hopper, a vendor-specific VFIO vGPU on a VF (`nvidia/current_vgpu_type`). Give \
                 the mdev's `uuid` to an `hsw_vm` `hostdev { mdev = ... }` block; a vendor VFIO vGPU is given as \
                 `hostdev { pci = <parent> }`. `persistent` changes in place; other changes replace the vGPU.",
            )
            .attribute(Attribute::computed("id", Type::String).describe("The mdev UUID, or the VF's PCI address for a vendor VFIO vGPU."))
            .attribute(
                Attribute::optional_computed("parent", Type::String)
                    .requires_replace()
                    .describe("The parent's PCI address: the GPU (or, for MIG-backed vGPU, the SR-IOV VF), such as `0000:41:00.4`. Set this or `gpu_instance`."),
            )
            .attribute(
                Attribute::optional("gpu_instance", Type::String)
                    .requires_replace()
                    .describe("For a MIG-backed vGPU, instead of `parent`: the `hsw_mig_instance` id (`<GPU PCI address>/<GPU instance id>`). The parent is then the first virtual function of that GPU that carries no vGPU and offers the type (on vendor VFIO, preferably the one whose `nvidia/gpu_instance_id` names the instance), found at apply time. Which VF backs which GPU instance is the driver's business; UNVERIFIED on hardware."),
            )
            .attribute(
                Attribute::required("type", Type::String)
                    .requires_replace()
                    .describe("The vGPU type by name, as the type's `name` file or `creatable_vgpu_types` says it: `GRID A100-2-10C`, `NVIDIA H200X-1-18C`. Never the `nvidia-NNN` directory, whose number is arbitrary."),
            )
            .attribute(
                Attribute::optional_computed("uuid", Type::String)
                    .requires_replace()
                    .describe("The mdev UUID. A new one when not set. Null for vendor VFIO vGPUs, which have none."),
            )
            .attribute(
                Attribute::optional_computed("persistent", Type::Bool)
                    .describe("Whether mdevctl defines the mdev to start at boot (`/etc/mdevctl.d/<parent>/<uuid>`). Default `false`. Changes in place; not available for vendor VFIO vGPUs."),
            )
            .attribute(Attribute::computed("type_id", Type::String).describe("The type's sysfs id: the `nvidia-NNN` directory, or the vendor type number."))
            .attribute(Attribute::computed("flavor", Type::String).describe("`mdev` or `vendor_vfio`.")),
    )
}

fn check(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(p) = config.get("parent").as_str() {
        if normalize_pci(p).is_none() {
            d.push(
                Diagnostic::error(
                    "Invalid parent",
                    format!(
                        "{} is not a PCI address such as 0000:41:00.4.",
                        validate::quote(p)
                    ),
                )
                .at(AttrPath::attr("parent")),
            );
        }
    }
    let (parent, gi) = (config.get("parent"), config.get("gpu_instance"));
    if parent.is_wholly_known() && gi.is_wholly_known() && parent.is_null() == gi.is_null() {
        d.push(Diagnostic::error(
            "Invalid vGPU parent",
            "Set exactly one of parent and gpu_instance.",
        ));
    }
    if let Some(g) = gi.as_str() {
        if let Err(m) = gpu_instance(g) {
            d.push(Diagnostic::error("Invalid GPU instance", m).at(AttrPath::attr("gpu_instance")));
        }
    }
    if let Some(u) = config.get("uuid").as_str() {
        if let Err(m) = validate::uuid(u) {
            d.push(Diagnostic::error("Invalid mdev UUID", m).at(AttrPath::attr("uuid")));
        }
    }
    if let Some(t) = config.get("type").as_str() {
        if t.trim().is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
            d.push(
                Diagnostic::error(
                    "Invalid vGPU type",
                    "The vGPU type must be a name such as \"GRID A100-2-10C\" (printable, at most 128 characters).",
                )
                .at(AttrPath::attr("type")),
            );
        }
    }
    d
}

/// The GPU and GPU-instance id of an `hsw_mig_instance` id.
fn gpu_instance(id: &str) -> Result<(String, u32), String> {
    id.rsplit_once('/')
        .and_then(|(g, n)| Some((normalize_pci(g)?, n.trim().parse().ok()?)))
        .ok_or_else(|| {
            format!(
                "{} is not an hsw_mig_instance id `<GPU PCI address>/<GPU instance id>`, such as `0000:41:00.0/1`.",
                validate::quote(id)
            )
        })
}

fn state_from(base: &Value, v: &Vgpu) -> Value {
    let mut s = base.clone();
    // Keep the parent as written when it names the same device.
    let same_parent = s
        .get("parent")
        .as_str()
        .and_then(normalize_pci)
        .is_some_and(|p| p == v.parent);
    if !same_parent {
        s.set("parent", v.parent.clone());
    }
    if let Some(name) = &v.type_name {
        // Keep the type as written when it names the same type (`A100-2-10C` for `GRID A100-2-10C`).
        if !s.get("type").as_str().is_some_and(|t| same_type(t, name)) {
            s.set("type", name.clone());
        }
    } else if s.get("type").is_null() || s.get("type").is_unknown() {
        s.set("type", v.type_id.clone());
    }
    s.with("id", v.id())
        .with("uuid", v.uuid.clone())
        .with("persistent", v.persistent)
        .with("type_id", v.type_id.clone())
        .with("flavor", v.flavor.as_str())
}

impl MdevResource {
    async fn find(&self, id: String) -> Result<Option<Vgpu>, Diagnostics> {
        let m = mdev_backend(&self.shared)?;
        blocking(move || m.find(&id))
            .await?
            .map_err(|e| diag(e, None))
    }
}

#[async_trait]
impl Resource for MdevResource {
    fn type_name(&self) -> &str {
        "hsw_mdev"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        check(config)
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        Ok(plan_with(req, |p, c| {
            default_attr(p, c, "persistent", false)
        }))
    }

    async fn create(&self, _ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        let root = AttrPath::root();
        let type_name = req_str(planned, "type", &root)?;
        let uuid = opt_str(planned, "uuid");
        let persistent = planned.get("persistent").as_bool().unwrap_or(false);
        let m = mdev_backend(&self.shared)?;
        let made = match opt_str(planned, "parent") {
            Some(parent) => {
                blocking(move || m.create(&parent, &type_name, uuid.as_deref(), persistent)).await?
            }
            None => {
                let id = req_str(planned, "gpu_instance", &root)?;
                let (gpu, gi_id) = gpu_instance(&id).map_err(|e| {
                    Diagnostics::error_at(AttrPath::attr("gpu_instance"), "Invalid GPU instance", e)
                })?;
                let lock_dir = self.mig.get(&self.shared).await?.lock_dir.clone();
                blocking(move || {
                    let _lock = GpuLock::acquire(&lock_dir, &gpu)?;
                    let parent = parent_for(&m, m.root(), &gpu, gi_id, &type_name)?;
                    m.create(&parent, &type_name, uuid.as_deref(), persistent)
                })
                .await?
            }
        };
        match made {
            Ok(v) => Ok(state_from(planned, &v)),
            Err(e) => {
                let at = match e.kind {
                    ErrorKind::NotFound | ErrorKind::InsufficientResources
                        if !planned.get("gpu_instance").is_null() =>
                    {
                        Some(AttrPath::attr("gpu_instance"))
                    }
                    ErrorKind::NotFound | ErrorKind::InsufficientResources => {
                        Some(AttrPath::attr("type"))
                    }
                    ErrorKind::InUse => Some(AttrPath::attr("uuid")),
                    ErrorKind::NotSupported => Some(AttrPath::attr("persistent")),
                    _ => None,
                };
                Err(diag(e, at))
            }
        }
    }

    async fn update(
        &self,
        _ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let id = req_str(prior, "id", &AttrPath::root())?;
        let Some(v) = self.find(id.clone()).await? else {
            return Err(Diagnostics::error(
                "vGPU not found",
                format!(
                    "The vGPU {id} no longer exists; run `terraform apply` again to create it."
                ),
            ));
        };
        let persistent = planned.get("persistent").as_bool().unwrap_or(false);
        let m = mdev_backend(&self.shared)?;
        let vv = v.clone();
        blocking(move || m.set_persistent(&vv, persistent))
            .await?
            .map_err(|e| diag(e, Some(AttrPath::attr("persistent"))))?;
        Ok(state_from(planned, &Vgpu { persistent, ..v }))
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        let Some(id) = opt_str(state, "id") else {
            return Ok(None);
        };
        Ok(self.find(id).await?.map(|v| state_from(state, &v)))
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        let Some(id) = opt_str(state, "id") else {
            return Ok(());
        };
        let Some(v) = self.find(id).await? else {
            return Ok(());
        };
        let m = mdev_backend(&self.shared)?;
        blocking(move || m.remove(&v))
            .await?
            .map_err(|e| diag(e, None))
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        let Some(v) = self.find(id.to_owned()).await? else {
            return Err(Diagnostics::error(
                "vGPU not found",
                format!(
                    "No mdev with UUID {id:?} (and no vendor VFIO vGPU on a VF of that PCI address) exists. List them \
                     with `mdevctl list` or `hsw-cli gpu discover`."
                ),
            ));
        };
        let base = schema()
            .block
            .null_object()
            .with("parent", v.parent.clone());
        let mut s = state_from(&base, &v);
        if v.flavor == VgpuFlavor::VendorVfio && v.type_name.is_none() {
            s.set("type", v.type_id.clone());
        }
        Ok(vec![s])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_well_formed() {
        schema().check().unwrap();
    }

    #[test]
    fn validation_names_paths() {
        let cfg = schema()
            .block
            .null_object()
            .with("parent", "41:00")
            .with("uuid", "nope")
            .with("type", "a\nb");
        assert_eq!(check(&cfg).iter().count(), 3);
    }
}
