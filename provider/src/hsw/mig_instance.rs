//! `hsw_mig_instance`: one MIG instance (a GPU instance with one compute instance) on one GPU.
//!
//! Every argument replaces the instance when it changes (MIG instances cannot be resized). Creation takes the
//! GPU's host-level lock across "read the GPU instances → pick the placement → create", and a compute instance
//! that fails destroys the GPU instance made for it. The id is `<gpu pci>/<gpu instance id>`, which import takes.
//!
//! Stale state: GPU-instance ids are reused, so read and delete check that the instance under the stored id is the
//! stored one (GPU UUID, profile, placement, MIG device UUID; [`ops::Expect`]): another one reads as "gone" (the
//! stored instance was replaced behind Terraform's back) and is never destroyed. The state records the backend
//! that made the instance; it is never read or destroyed through another (with `gpu_backend = "auto"`, a failed
//! NVML open falls back to the simulation, which must not answer for real GPUs). A GPU that is not there is an
//! error, not a deletion. A create killed between making the GPU instance and answering leaves an intent file
//! that the next create or destroy on that GPU acts on (`hsw_gpu_backend::intent`).

use hsw_gpu_backend::ops::{self, CreateRequest, Destroyed, Expect, MigInstance};
use hsw_gpu_backend::ErrorKind;

use crate::framework::{
    async_trait, AttrPath, Attribute, Block, Context, Diagnostic, Diagnostics, PlanOutcome,
    PlanRequest, Resource, Schema, Type, Value,
};

use super::gpu::{blocking, diag, Mig, MigCell};
use super::values::{opt_str, req_str};
use super::Shared;

/// The `hsw_mig_instance` resource.
#[derive(Debug)]
pub struct MigInstanceResource {
    shared: Shared,
    mig: MigCell,
}

impl MigInstanceResource {
    /// The resource, reaching the provider's configuration through `shared`.
    pub fn new(shared: Shared) -> MigInstanceResource {
        MigInstanceResource {
            shared,
            mig: MigCell::default(),
        }
    }
}

/// The schema of `hsw_mig_instance`.
pub fn schema() -> Schema {
    Schema::new(
        Block::new()
            .describe(
                "A MIG instance: one GPU instance of a MIG profile on a GPU, holding one compute instance, which \
                 is the MIG device a VM or container gets. MIG mode must be enabled on the GPU already (hsw never \
                 changes it: `nvidia-smi -i N -mig 1`, then a GPU reset). Every change replaces the instance. \
                 Works on real GPUs through NVML and on the simulated backend, which enforces the same rules.",
            )
            .attribute(Attribute::computed("id", Type::String).describe("`<GPU PCI address>/<GPU instance id>`."))
            .attribute(
                Attribute::required("gpu", Type::String)
                    .requires_replace()
                    .describe("The GPU: its NVML index, UUID (`GPU-...`) or PCI address (`0000:41:00.0`)."),
            )
            .attribute(
                Attribute::required("profile", Type::String)
                    .requires_replace()
                    .describe("The GPU-instance profile, by name as `nvidia-smi mig -lgip` shows it (`1g.10gb`, `3g.40gb`, `1g.10gb+me`) or by ID."),
            )
            .attribute(
                Attribute::optional_computed("placement_start", Type::Number)
                    .requires_replace()
                    .describe("The first memory slice of the instance; it must be one of the profile's legal starts. When not set, the first legal start that is free is taken at apply time (planning many instances on one GPU is `hsw-cli gpu plan`'s business: give its starts here)."),
            )
            .attribute(
                Attribute::optional_computed("compute_profile", Type::String)
                    .requires_replace()
                    .describe("The compute instance's size in compute slices, such as `1c` (or `1c.3g.40gb`). Default: the whole GPU instance."),
            )
            .attribute(Attribute::computed("placement_size", Type::Number).describe("Memory slices the instance covers."))
            .attribute(Attribute::computed("gi_id", Type::Number).describe("The GPU instance id."))
            .attribute(Attribute::computed("ci_id", Type::Number).describe("The compute instance id."))
            .attribute(Attribute::computed("mig_device_uuid", Type::String).describe("The MIG device UUID (`MIG-...`), as CUDA_VISIBLE_DEVICES and the NVIDIA device plugin name it."))
            .attribute(Attribute::computed("gpu_pci", Type::String).describe("The GPU's PCI address."))
            .attribute(Attribute::computed("gpu_uuid", Type::String).describe("The GPU's UUID."))
            .attribute(Attribute::computed("backend", Type::String).describe("The GPU backend that made it: `nvml` or `simulated`.")),
    )
}

/// Compute slices from `1c`, `2c.3g.40gb`, ...
pub fn parse_compute_profile(s: &str) -> Result<u32, String> {
    let lower = s.trim().to_ascii_lowercase();
    let head = lower.split('.').next().unwrap_or_default();
    head.strip_suffix('c')
        .and_then(|n| n.parse::<u32>().ok())
        .filter(|n| (1..=8).contains(n))
        .ok_or_else(|| {
            format!(
                "{s:?} is not a compute profile: write the compute slices as `1c`, `2c`, ... (or `1c.3g.40gb`)."
            )
        })
}

fn check(config: &Value) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(n) = config.get("placement_start").as_number() {
        if n.as_u64().is_none_or(|x| x > 7) {
            d.push(
                Diagnostic::error(
                    "Invalid placement start",
                    format!("{n} is not a memory slice: use a whole number from 0 to 7."),
                )
                .at(AttrPath::attr("placement_start")),
            );
        }
    }
    if let Some(c) = config.get("compute_profile").as_str() {
        if let Err(m) = parse_compute_profile(c) {
            d.push(
                Diagnostic::error("Invalid compute profile", m)
                    .at(AttrPath::attr("compute_profile")),
            );
        }
    }
    for a in ["gpu", "profile"] {
        if config.get(a).as_str().is_some_and(|s| s.trim().is_empty()) {
            d.push(
                Diagnostic::error("Empty value", format!("{a} must not be empty."))
                    .at(AttrPath::attr(a)),
            );
        }
    }
    d
}

/// What finds a stored instance again: its GPU (the PCI address the backend reported, else the `gpu` argument)
/// and its GPU instance id; `None` when the state has no id (nothing was made).
fn instance_key(state: &Value) -> Result<Option<(String, u32)>, Diagnostics> {
    let gpu =
        opt_str(state, "gpu_pci").map_or_else(|| req_str(state, "gpu", &AttrPath::root()), Ok)?;
    Ok(u32_of(state, "gi_id").map(|gi_id| (gpu, gi_id)))
}

fn u32_of(v: &Value, name: &str) -> Option<u32> {
    v.get(name)
        .as_number()
        .and_then(|n| n.as_u64())
        .and_then(|n| u32::try_from(n).ok())
}

/// The state for an instance: `base` (planned or prior) with the computed attributes filled in.
fn state_from(base: &Value, inst: &MigInstance, backend: &str) -> Value {
    let mut v = base.clone();
    let compute = inst.compute_slices.map(|c| format!("{c}c"));
    if v.get("compute_profile").is_unknown() || v.get("compute_profile").is_null() {
        v.set("compute_profile", Value::from(compute));
    }
    if v.get("gpu").is_unknown() || v.get("gpu").is_null() {
        v.set("gpu", inst.gpu_pci.clone());
    }
    if v.get("profile").is_unknown() || v.get("profile").is_null() {
        v.set("profile", inst.profile.clone());
    }
    v.with("id", format!("{}/{}", inst.gpu_pci, inst.gi_id))
        .with("placement_start", inst.placement.start)
        .with("placement_size", inst.placement.size)
        .with("gi_id", inst.gi_id)
        .with("ci_id", inst.ci_id)
        .with(
            "mig_device_uuid",
            inst.mig_device_uuid.clone().unwrap_or_default(),
        )
        .with("gpu_pci", inst.gpu_pci.clone())
        .with("gpu_uuid", inst.gpu_uuid.clone())
        .with("backend", backend)
}

fn at(kind: ErrorKind) -> Option<AttrPath> {
    match kind {
        ErrorKind::NotSupported => Some(AttrPath::attr("profile")),
        ErrorKind::InvalidArgument | ErrorKind::InsufficientResources => {
            Some(AttrPath::attr("placement_start"))
        }
        ErrorKind::MigDisabled | ErrorKind::ResetRequired | ErrorKind::NotFound => {
            Some(AttrPath::attr("gpu"))
        }
        _ => None,
    }
}

impl MigInstanceResource {
    /// Plan-time checks that need the GPU: the device exists, MIG is on, the profile is the model's, the start
    /// is legal for it. Backend failures are left to apply.
    fn static_check(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        let (Some(gpu), Some(profile)) =
            (config.get("gpu").as_str(), config.get("profile").as_str())
        else {
            return d;
        };
        let Ok(c) = super::configured(&self.shared) else {
            return d;
        };
        let Ok(opened) = super::gpu::open_mig(&c.config) else {
            return d;
        };
        let dev = match ops::find_device(opened.backend.as_ref(), gpu) {
            Ok(dev) => dev,
            Err(e) if e.kind == ErrorKind::NotFound => {
                d.extend(diag(e, Some(AttrPath::attr("gpu"))));
                return d;
            }
            Err(_) => return d,
        };
        if let Err(e) = dev.require_mig() {
            d.extend(diag(e, Some(AttrPath::attr("gpu"))));
            return d;
        }
        let Some(model) = dev.model() else {
            return d;
        };
        let p = model.profile(profile).or_else(|| {
            profile
                .trim()
                .parse::<u32>()
                .ok()
                .and_then(|id| model.profile_by_id(id))
        });
        let Some(p) = p else {
            let hint = hsw_core::gpu::suggest_profile(model, profile)
                .map(|s| format!(" Did you mean {}?", s.name))
                .unwrap_or_default();
            d.push(
                Diagnostic::error(
                    "Profile not on this GPU",
                    format!(
                        "The {} at {} has no MIG profile {profile:?}; its profiles are {}.{hint}",
                        model.display_name,
                        dev.pci_address,
                        model
                            .profiles
                            .iter()
                            .map(|p| p.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
                .at(AttrPath::attr("profile")),
            );
            return d;
        };
        if let Some(start) = u32_of(config, "placement_start") {
            if !p.placement_starts.contains(&start) {
                d.push(
                    Diagnostic::error(
                        "Placement not legal for the profile",
                        format!(
                            "{} cannot start at memory slice {start} on the {}; its legal starts are {:?}.",
                            p.name, model.display_name, p.placement_starts
                        ),
                    )
                    .at(AttrPath::attr("placement_start")),
                );
            }
        }
        if let Some(Ok(c)) = config
            .get("compute_profile")
            .as_str()
            .map(parse_compute_profile)
        {
            if c > p.compute_slices {
                d.push(
                    Diagnostic::error(
                        "Compute profile larger than the instance",
                        format!(
                            "A {} instance has {} compute slices, fewer than {c}.",
                            p.name, p.compute_slices
                        ),
                    )
                    .at(AttrPath::attr("compute_profile")),
                );
            }
        }
        d
    }

    async fn read_instance(
        &self,
        gpu: String,
        gi_id: u32,
    ) -> Result<(Option<MigInstance>, String), Diagnostics> {
        let mig = self.mig.get(&self.shared).await?;
        let kind = mig.backend.kind().as_str().to_owned();
        let found = blocking(move || ops::read(mig.backend.as_ref(), &gpu, gi_id)).await?;
        Ok((found.map_err(device_error)?, kind))
    }
}

/// The error of a backend call on a stored instance: a missing GPU is said to be no deletion.
fn device_error(e: hsw_gpu_backend::GpuError) -> Diagnostics {
    if e.kind != ErrorKind::NotFound {
        return diag(e, None);
    }
    Diagnostics::from(
        Diagnostic::error(
            "GPU of the MIG instance not found",
            format!(
                "{} A missing GPU is not taken for a destroyed instance, so nothing is created or destroyed for it: \
                 bring the GPU back (the driver loaded, `nvidia-smi` listing it), or, if it is gone for good, forget \
                 the instance with `terraform state rm`.",
                e.message
            ),
        )
        .at(AttrPath::attr("gpu")),
    )
}

/// Refuses to read or destroy, through the backend opened now, an instance another backend made.
fn same_backend(state: &Value, mig: &Mig) -> Result<(), Diagnostics> {
    let now = mig.backend.kind().as_str();
    match opt_str(state, "backend") {
        Some(made) if !made.is_empty() && made != now => Err(Diagnostics::error_at(
            AttrPath::attr("backend"),
            "MIG instance of another GPU backend",
            format!(
                "This MIG instance was made by the {made} backend, but the provider opened the {now} backend{}. hsw \
                 never reads or destroys one backend's instances through another. Make the {made} backend usable \
                 again (for NVML: the NVIDIA driver loaded and `nvidia-smi` answering) and set `gpu_backend = \
                 \"{made}\"` in the provider block, or forget this instance with `terraform state rm`.",
                mig.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
        )),
        _ => Ok(()),
    }
}

/// What the state says the instance is, beyond its id.
fn expect_of(state: &Value) -> Expect {
    Expect {
        gpu_uuid: opt_str(state, "gpu_uuid"),
        profile: opt_str(state, "profile"),
        placement_start: u32_of(state, "placement_start"),
        mig_device_uuid: opt_str(state, "mig_device_uuid"),
    }
}

#[async_trait]
impl Resource for MigInstanceResource {
    fn type_name(&self) -> &str {
        "hsw_mig_instance"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        check(config)
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        let out = req.default_plan();
        if req.is_create() || !out.requires_replace.is_empty() {
            let d = self.static_check(req.config);
            if d.has_errors() {
                return Err(d);
            }
        }
        Ok(out)
    }

    async fn create(&self, _ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        let root = AttrPath::root();
        let req = CreateRequest {
            gpu: req_str(planned, "gpu", &root)?,
            profile: req_str(planned, "profile", &root)?,
            placement_start: u32_of(planned, "placement_start"),
            compute_slices: match opt_str(planned, "compute_profile") {
                Some(c) => Some(parse_compute_profile(&c).map_err(|m| {
                    Diagnostics::error_at(
                        AttrPath::attr("compute_profile"),
                        "Invalid compute profile",
                        m,
                    )
                })?),
                None => None,
            },
        };
        // A re-planned GPU: Terraform destroys the old instances and creates the new ones of one apply at the same
        // time, so the create waits for the room an instance being destroyed still holds.
        let room_wait = super::configured(&self.shared)?.backend.lock_wait;
        let mig = self.mig.get(&self.shared).await?;
        let kind = mig.backend.kind().as_str().to_owned();
        let m = mig.clone();
        let made =
            blocking(move || ops::create(m.backend.as_ref(), &m.lock_dir, &req, room_wait)).await?;
        match made {
            Ok(inst) => Ok(state_from(planned, &inst, &kind)),
            Err(e) => {
                let p = at(e.kind);
                Err(diag(e, p))
            }
        }
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        let Some((gpu, gi_id)) = instance_key(state)? else {
            return Ok(None);
        };
        same_backend(state, &self.mig.get(&self.shared).await?)?;
        let (found, kind) = self.read_instance(gpu, gi_id).await?;
        let Some(inst) = found else {
            return Ok(None);
        };
        if let Some(why) = expect_of(state).mismatch(&inst) {
            // The stored instance is gone and its id reused: Terraform plans to create it again; the other
            // instance is not ours to show or destroy.
            tracing::warn!(id = %format!("{}/{gi_id}", inst.gpu_pci), %why, "the MIG instance in the state was replaced");
            return Ok(None);
        }
        let mut v = state_from(state, &inst, &kind);
        // Drift that forces replacement: a GPU instance whose compute instance was destroyed behind Terraform's back.
        match inst.compute_slices {
            None => {
                v.set(
                    "profile",
                    format!("{}{}", inst.profile, ops::NO_COMPUTE_INSTANCE),
                );
            }
            Some(c) => {
                let wanted = opt_str(state, "compute_profile").map(|s| parse_compute_profile(&s));
                if !matches!(wanted, Some(Ok(w)) if w == c) {
                    v.set("compute_profile", format!("{c}c"));
                }
            }
        }
        Ok(Some(v))
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        let Some((gpu, gi_id)) = instance_key(state)? else {
            return Ok(());
        };
        let mig = self.mig.get(&self.shared).await?;
        same_backend(state, &mig)?;
        let expect = expect_of(state);
        let done = blocking(move || {
            ops::destroy(mig.backend.as_ref(), &mig.lock_dir, &gpu, gi_id, &expect)
        })
        .await?
        .map_err(device_error)?;
        if let Destroyed::Replaced(why) = done {
            tracing::warn!(%why, "the MIG instance in the state was already replaced; the new one is left alone");
        }
        Ok(())
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        let bad = || {
            Diagnostics::error(
                "Invalid import id",
                format!(
                    "{id:?} is not `<GPU PCI address>/<GPU instance id>`, such as `0000:41:00.0/1` (see `hsw-cli gpu \
                     discover` or `nvidia-smi mig -lgi`)."
                ),
            )
        };
        let (gpu, gi) = id.rsplit_once('/').ok_or_else(bad)?;
        let gi_id: u32 = gi.trim().parse().map_err(|_| bad())?;
        let (found, kind) = self.read_instance(gpu.trim().to_owned(), gi_id).await?;
        let Some(inst) = found else {
            return Err(Diagnostics::error(
                "MIG instance not found",
                format!("GPU {gpu} has no GPU instance {gi_id} on the {kind} backend."),
            ));
        };
        let base = schema()
            .block
            .null_object()
            .with("gpu", inst.gpu_pci.clone());
        Ok(vec![state_from(&base, &inst, &kind)])
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
    fn compute_profiles_parse() {
        assert_eq!(parse_compute_profile("1c"), Ok(1));
        assert_eq!(parse_compute_profile("3C.3g.40gb"), Ok(3));
        assert!(parse_compute_profile("0c").is_err());
        assert!(parse_compute_profile("1g").is_err());
        let cfg = schema()
            .block
            .null_object()
            .with("placement_start", 9i64)
            .with("compute_profile", "x")
            .with("gpu", " ");
        assert_eq!(check(&cfg).iter().count(), 3);
    }
}
