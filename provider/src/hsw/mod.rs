//! The hsw provider: its configuration block (`uri`, `pool_dir`, `gpu_backend`, `gpu_state_dir`, `sysfs_root`),
//! and its resources (`hsw_network`, `hsw_vm`, `hsw_mig_instance`, `hsw_mdev`) and data sources (`hsw_host`,
//! `hsw_gpus`). The GPU ones go through `hsw-gpu-backend` ([`gpu`]).
//!
//! Layout: [`validate`] and [`model`] are pure (checks, XML rendering and reading); [`network`], [`vm`] and
//! [`host`] turn Terraform values into model values and drive a [`Backend`] (`libvirt_objects` is what the two
//! libvirt resources share); [`mig_instance`], [`mdev`] and [`gpus`] drive the GPU backend; [`docs`] renders the
//! registry documentation from the schemas, for the types [`HswProvider`] lists.
//!
//! The backend is made when Terraform configures the provider, by a [`BackendFactory`]: the real one opens one
//! libvirt connection for the provider's lifetime; tests inject fakes with [`HswProvider::with_factory`].

pub mod docs;
pub mod gpu;
pub mod gpus;
pub mod host;
pub mod locks;
pub mod mdev;
pub mod mig_instance;
pub mod model;
pub mod network;
pub mod validate;
pub mod vm;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use crate::backend::libvirt::real::VirtLibvirt;
use crate::backend::storage::LocalStorage;
use crate::backend::Backend;
use crate::framework::{
    async_trait, AttrPath, Attribute, Block, Context, DataSource, Diagnostic, Diagnostics,
    Provider, Resource, Schema, Type, Value,
};

/// The default libvirt URI and pool directory: the ones `cluster.yaml`'s `host` block defaults to.
pub use hsw_core::config::model::{DEFAULT_LIBVIRT_URI as DEFAULT_URI, DEFAULT_POOL_DIR};
/// The GPU backends `gpu_backend` accepts.
pub const GPU_BACKENDS: [&str; 3] = ["auto", "nvml", "simulated"];

/// The provider configuration after defaults and environment variables are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// The libvirt URI.
    pub uri: String,
    /// Where disks and seed ISOs live; base images, kernels and initrds must be inside it.
    pub pool_dir: PathBuf,
    /// How GPUs are managed (`auto`, `nvml`, `simulated`); used by the GPU resources.
    pub gpu_backend: String,
    /// Where the simulated GPU backend keeps its state (and the per-GPU locks when simulated).
    pub gpu_state_dir: PathBuf,
    /// The root that sysfs and /etc paths of `hsw_mdev` are built from (`/` on a real host).
    pub sysfs_root: PathBuf,
}

/// The configured provider: its configuration and backend.
#[derive(Debug, Clone)]
pub struct Configured {
    /// The configuration.
    pub config: ProviderConfig,
    /// The backend.
    pub backend: Backend,
}

/// What resources keep to reach the configured provider.
pub type Shared = Arc<OnceLock<Configured>>;

/// Makes the backend for a configuration.
pub type BackendFactory = Arc<
    dyn Fn(ProviderConfig) -> Pin<Box<dyn Future<Output = Result<Backend, Diagnostics>> + Send>>
        + Send
        + Sync,
>;

/// The configured provider, or an error saying the provider was not configured.
pub fn configured(shared: &Shared) -> Result<&Configured, Diagnostics> {
    shared.get().ok_or_else(|| {
        Diagnostics::error(
            "Provider not configured",
            "Terraform did not configure the hsw provider before using it. This is a bug in Terraform or the provider.",
        )
    })
}

/// The hsw provider.
pub struct HswProvider {
    shared: Shared,
    factory: BackendFactory,
}

impl std::fmt::Debug for HswProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HswProvider")
            .field("configured", &self.shared.get().map(|c| &c.config))
            .finish_non_exhaustive()
    }
}

impl Default for HswProvider {
    /// The provider with the real backend: libvirt through the `virt` crate, files through `qemu-img` and
    /// `genisoimage`.
    fn default() -> HswProvider {
        HswProvider::with_factory(Arc::new(|config: ProviderConfig| {
            Box::pin(async move {
                let libvirt = VirtLibvirt::open(&config.uri).await.map_err(|e| {
                    Diagnostics::from(
                        Diagnostic::error("Cannot connect to libvirt", e.message)
                            .at(AttrPath::attr("uri")),
                    )
                })?;
                Ok(Backend {
                    libvirt: Arc::new(libvirt),
                    storage: Arc::new(LocalStorage),
                    lock_wait: lock_wait(std::env::var("HSW_LOCK_WAIT_SECS").ok().as_deref()),
                })
            })
        }))
    }
}

impl HswProvider {
    /// A provider whose backend comes from `factory` (tests pass fakes).
    pub fn with_factory(factory: BackendFactory) -> HswProvider {
        HswProvider {
            shared: Arc::new(OnceLock::new()),
            factory,
        }
    }

    /// The handle resources keep.
    pub fn shared(&self) -> Shared {
        self.shared.clone()
    }
}

/// The provider block's schema.
pub fn provider_schema() -> Schema {
    Schema::new(
        Block::new()
            .describe(
                "The hsw provider manages libvirt networks, virtual machines and GPU partitions on one host: isolated \
                 or NAT networks with DHCP and DNS, VMs booted from copy-on-write overlays of a base image with \
                 cloud-init, MIG instances and vGPUs (mdevs) to give them, and what the host and its GPUs offer.",
            )
            .attribute(Attribute::optional("uri", Type::String).describe(format!(
                "The libvirt connection URI. Defaults to the `HSW_LIBVIRT_URI` environment variable, else \
                 `{DEFAULT_URI}`. Examples: `qemu+unix:///system?socket=/run/hsw-sandbox/libvirt-sock` (a libvirtd \
                 in a sandbox), `test:///default` (libvirt's in-memory test driver). Shell metacharacters \
                 (including `&`) are refused."
            )))
            .attribute(Attribute::optional("pool_dir", Type::String).describe(format!(
                "The absolute directory holding base images, kernels and initrds (every path given to `hsw_vm` \
                 must be inside it, symbolic links included) and the VMs' disks and cloud-init seeds, which are \
                 written to `<pool_dir>/vms/<name>/` (files 0600, directories 0711: not readable or listable by \
                 other users). A create holds a lock per name in `<pool_dir>/.hsw-locks/` (0700), so a second apply \
                 creating the same name waits for it (up to 120 s). Defaults to the `HSW_POOL_DIR` environment \
                 variable, else `{DEFAULT_POOL_DIR}`. libvirt's QEMU processes must be able to traverse it."
            )))
            .attribute(Attribute::optional("gpu_backend", Type::String).describe(
                "How GPU resources reach the GPUs: `auto` (NVML when an NVIDIA driver is present, else simulated), \
                 `nvml` or `simulated`. Defaults to the `HSW_GPU_BACKEND` environment variable, else `auto`.",
            ))
            .attribute(Attribute::optional("gpu_state_dir", Type::String).describe(
                "The absolute directory where the simulated GPU backend keeps its GPUs (`gpu-sim.json`, shared by \
                 every Terraform run and `hsw-cli` on the host, under a file lock) and its per-GPU lock files. \
                 Defaults to the `HSW_GPU_STATE_DIR` environment variable, else `<pool_dir>/../state` \
                 (`/var/lib/hsw/state` with the default pool directory).",
            ))
            .attribute(Attribute::optional("sysfs_root", Type::String).describe(
                "The absolute directory `hsw_mdev` and `hsw_gpus` read sysfs and `/etc/mdevctl.d` under (like \
                 mdevctl's `MDEVCTL_ENV_ROOT`). Defaults to the `HSW_SYSFS_ROOT` environment variable, else `/`.",
            )),
    )
}

/// How long a create waits for a busy name or for the room a destroy frees: `HSW_LOCK_WAIT_SECS` (whole seconds,
/// at most an hour: tests shorten it), else [`crate::backend::LOCK_WAIT`]; anything else is the default.
fn lock_wait(env: Option<&str>) -> std::time::Duration {
    env.and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s <= 3600)
        .map_or(crate::backend::LOCK_WAIT, std::time::Duration::from_secs)
}

fn env_or(value: Option<&str>, var: &str, default: &str) -> String {
    value
        .map(str::to_owned)
        .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| default.to_owned())
}

/// Checks the provider arguments that are known; unknown ones are checked at configure time.
pub fn check_config(
    uri: Option<&str>,
    pool_dir: Option<&str>,
    gpu_backend: Option<&str>,
) -> Diagnostics {
    let mut d = Diagnostics::new();
    if let Some(u) = uri {
        if let Err(m) = validate::uri(u) {
            d.push(Diagnostic::error("Invalid libvirt URI", m).at(AttrPath::attr("uri")));
        }
    }
    if let Some(p) = pool_dir {
        if let Err(m) = validate::absolute_path(p) {
            d.push(Diagnostic::error("Invalid pool directory", m).at(AttrPath::attr("pool_dir")));
        } else if p == "/" {
            d.push(
                Diagnostic::error(
                    "Invalid pool directory",
                    "The pool directory cannot be '/': choose a directory for hsw's images.",
                )
                .at(AttrPath::attr("pool_dir")),
            );
        }
    }
    if let Some(g) = gpu_backend {
        if !GPU_BACKENDS.contains(&g) {
            d.push(
                Diagnostic::error(
                    "Invalid GPU backend",
                    format!(
                        "{} is not a GPU backend: use one of auto, nvml, simulated.",
                        validate::quote(g)
                    ),
                )
                .at(AttrPath::attr("gpu_backend")),
            );
        }
    }
    d
}

/// Resolves the provider configuration: configured values, else environment variables, else defaults; checked.
pub fn resolve_config(config: &Value) -> Result<ProviderConfig, Diagnostics> {
    for name in [
        "uri",
        "pool_dir",
        "gpu_backend",
        "gpu_state_dir",
        "sysfs_root",
    ] {
        if config.get(name).is_unknown() {
            return Err(Diagnostics::error_at(
                AttrPath::attr(name),
                "Provider argument not known yet",
                format!("The hsw provider's {name} depends on a value known only after apply. Set it to a value known at plan time."),
            ));
        }
    }
    let pool_dir = PathBuf::from(env_or(
        config.get("pool_dir").as_str(),
        "HSW_POOL_DIR",
        DEFAULT_POOL_DIR,
    ));
    let default_state = hsw_core::config::model::default_gpu_state_dir(&pool_dir)
        .to_string_lossy()
        .into_owned();
    let resolved = ProviderConfig {
        uri: env_or(config.get("uri").as_str(), "HSW_LIBVIRT_URI", DEFAULT_URI),
        gpu_backend: env_or(
            config.get("gpu_backend").as_str(),
            "HSW_GPU_BACKEND",
            "auto",
        ),
        gpu_state_dir: PathBuf::from(env_or(
            config.get("gpu_state_dir").as_str(),
            "HSW_GPU_STATE_DIR",
            &default_state,
        )),
        sysfs_root: PathBuf::from(env_or(
            config.get("sysfs_root").as_str(),
            "HSW_SYSFS_ROOT",
            "/",
        )),
        pool_dir,
    };
    let mut d = check_config(
        Some(&resolved.uri),
        Some(&resolved.pool_dir.to_string_lossy()),
        Some(&resolved.gpu_backend),
    );
    d.extend(gpu::check_paths(
        Some(&resolved.gpu_state_dir.to_string_lossy()),
        Some(&resolved.sysfs_root.to_string_lossy()),
    ));
    if d.has_errors() {
        return Err(d);
    }
    Ok(resolved)
}

#[async_trait]
impl Provider for HswProvider {
    fn schema(&self) -> Schema {
        provider_schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = check_config(
            config.get("uri").as_str(),
            config.get("pool_dir").as_str(),
            config.get("gpu_backend").as_str(),
        );
        d.extend(gpu::check_paths(
            config.get("gpu_state_dir").as_str(),
            config.get("sysfs_root").as_str(),
        ));
        d
    }

    async fn configure(
        &self,
        _ctx: &Context,
        _terraform_version: &str,
        config: &Value,
    ) -> Result<(), Diagnostics> {
        if self.shared.get().is_some() {
            // Terraform configures a provider once per process; a second call keeps the first configuration.
            return Ok(());
        }
        let config = resolve_config(config)?;
        tracing::info!(uri = %config.uri, pool_dir = %config.pool_dir.display(), "configuring the hsw provider");
        let backend = (self.factory)(config.clone()).await?;
        let _ = self.shared.set(Configured { config, backend });
        Ok(())
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![
            Arc::new(network::NetworkResource::new(self.shared.clone())),
            Arc::new(vm::VmResource::new(self.shared.clone())),
            Arc::new(mig_instance::MigInstanceResource::new(self.shared.clone())),
            Arc::new(mdev::MdevResource::new(self.shared.clone())),
        ]
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        vec![
            Arc::new(host::HostDataSource::new(self.shared.clone())),
            Arc::new(gpus::GpusDataSource::new(self.shared.clone())),
        ]
    }
}

/// Small helpers for reading Terraform values in resources.
pub(crate) mod values {
    use crate::framework::{AttrPath, Diagnostic, Diagnostics, Value};

    /// A known string attribute, `None` when null.
    pub fn opt_str(v: &Value, name: &str) -> Option<String> {
        v.get(name).as_str().map(str::to_owned)
    }

    /// A known, non-null string attribute, or an error naming it.
    pub fn req_str(v: &Value, name: &str, at: &AttrPath) -> Result<String, Diagnostics> {
        opt_str(v, name).ok_or_else(|| missing(at.then_attr(name)))
    }

    /// A known whole number attribute in `range`, `None` when null.
    pub fn opt_u64(
        v: &Value,
        name: &str,
        at: &AttrPath,
        min: u64,
        max: u64,
    ) -> Result<Option<u64>, Diagnostics> {
        match v.get(name) {
            Value::Null => Ok(None),
            Value::Number(n) => match n.as_u64().filter(|x| (min..=max).contains(x)) {
                Some(x) => Ok(Some(x)),
                None => Err(Diagnostic::error(
                    "Value out of range",
                    format!("{n} is not a whole number from {min} to {max}."),
                )
                .at(at.then_attr(name))
                .into()),
            },
            _ => Err(missing(at.then_attr(name))),
        }
    }

    /// A list of known strings (empty when null).
    pub fn str_list(v: &Value, name: &str) -> Vec<String> {
        v.get(name)
            .as_slice()
            .unwrap_or_default()
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect()
    }

    /// The elements of list attribute `name` (none when null or unknown), each with its path (`name[i]`).
    pub fn items<'a>(v: &'a Value, name: &'a str) -> impl Iterator<Item = (AttrPath, &'a Value)> {
        v.get(name)
            .as_slice()
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(move |(i, x)| (AttrPath::attr(name).then_index(i), x))
    }

    /// The error for a value that had to be known.
    pub fn missing(path: AttrPath) -> Diagnostics {
        Diagnostics::error_at(
            path.clone(),
            "Value not known",
            format!("{path} must be set to a value known at this point. This is a bug in the provider if the configuration sets it."),
        )
    }

    /// Error diagnostics from `(attribute, message)` problems under `at`.
    pub fn problems(summary: &str, at: &AttrPath, problems: Vec<(String, String)>) -> Diagnostics {
        Diagnostics(
            problems
                .into_iter()
                .map(|(attr, m)| Diagnostic::error(summary, m).at(at.then_attr(attr)))
                .collect(),
        )
    }
}

/// Planning with defaults: static defaults for optional+computed attributes the configuration leaves null.
pub(crate) mod planning {
    use crate::framework::{PlanOutcome, PlanRequest, Value};

    /// Runs the default plan after `fill` put defaults into both the proposal and (so that the default plan keeps
    /// them instead of marking them unknown) a copy of the configuration. A default changes the plan like a
    /// configured value would: removing `mode = "nat"` from a configuration plans the default, `isolated`.
    pub fn plan_with(
        req: &PlanRequest<'_>,
        fill: impl FnOnce(&mut Value, &mut Value),
    ) -> PlanOutcome {
        let mut proposed = req.proposed.clone();
        let mut config = req.config.clone();
        fill(&mut proposed, &mut config);
        PlanRequest {
            schema: req.schema,
            prior: req.prior,
            proposed: &proposed,
            config: &config,
        }
        .default_plan()
    }

    /// Sets `name` to `value` in both when the configuration leaves it null.
    pub fn default_attr(
        proposed: &mut Value,
        config: &mut Value,
        name: &str,
        value: impl Into<Value>,
    ) {
        if config.get(name).is_null() {
            let v = value.into();
            proposed.set(name, v.clone());
            config.set(name, v);
        }
    }
}

/// What the libvirt-backed resources (`hsw_network`, `hsw_vm`) share: finding their object again from the state or
/// an import id, and turning libvirt's errors into diagnostics.
pub(crate) mod libvirt_objects {
    use crate::backend::libvirt::{Key, LibvirtError};
    use crate::framework::{AttrPath, Diagnostics, Value};

    use super::values::req_str;

    /// A kind of libvirt object, as messages name it.
    #[derive(Debug, Clone, Copy)]
    pub struct Kind {
        /// The resource's word for it, capitalised: `Network`, `VM`.
        pub title: &'static str,
        /// libvirt's word for it: `network`, `domain`.
        pub libvirt: &'static str,
        /// The `virsh` command that lists them all.
        pub list: &'static str,
    }

    /// The key that finds a resource's object again: its `id` (libvirt's UUID) once known, else its `name`.
    pub fn state_key(state: &Value) -> Result<Key, Diagnostics> {
        Ok(match state.get("id").as_str() {
            Some(id) => Key::Uuid(id.to_owned()),
            None => Key::Name(req_str(state, "name", &AttrPath::root())?),
        })
    }

    /// The answer to `terraform import <address> <id>` (a name or a UUID) from what a lookup by that id `found`:
    /// the state, or an error saying where to list what exists.
    pub fn imported(kind: Kind, id: &str, found: Option<Value>) -> Result<Vec<Value>, Diagnostics> {
        found.map(|v| vec![v]).ok_or_else(|| {
            Diagnostics::error(
                format!("{} not found", kind.title),
                format!(
                    "libvirt has no {} named {id:?} or with that UUID. Check `{}` on the provider's URI.",
                    kind.libvirt, kind.list
                ),
            )
        })
    }

    /// A `map_err` for a libvirt call: an error with `summary`, and `what` failed followed by libvirt's message.
    pub fn lv_err(summary: &str, what: String) -> impl FnOnce(LibvirtError) -> Diagnostics {
        let summary = summary.to_owned();
        move |e| Diagnostics::error(summary, format!("{what}: {}.", e.message))
    }
}

#[cfg(test)]
mod tests {
    use super::libvirt_objects::{imported, state_key, Kind};
    use super::values::items;
    use crate::backend::libvirt::Key;
    use crate::framework::Value;

    #[test]
    fn the_lock_wait_takes_whole_seconds_up_to_an_hour() {
        use std::time::Duration;
        assert_eq!(super::lock_wait(None), crate::backend::LOCK_WAIT);
        assert_eq!(super::lock_wait(Some("2")), Duration::from_secs(2));
        assert_eq!(super::lock_wait(Some(" 0 ")), Duration::ZERO);
        for bad in ["", "-1", "1.5", "3601", "x", "99999999999999999999999"] {
            assert_eq!(
                super::lock_wait(Some(bad)),
                crate::backend::LOCK_WAIT,
                "{bad}"
            );
        }
    }

    #[test]
    fn items_carry_their_paths() {
        let v = Value::object([(
            "disk",
            Value::List(vec![Value::from("a"), Value::from("b")]),
        )]);
        let seen: Vec<(String, Option<&str>)> = items(&v, "disk")
            .map(|(at, x)| (at.to_string(), x.as_str()))
            .collect();
        assert_eq!(
            seen,
            [
                ("disk[0]".to_owned(), Some("a")),
                ("disk[1]".to_owned(), Some("b"))
            ]
        );
        assert_eq!(items(&v, "other").count(), 0);
    }

    #[test]
    fn state_key_prefers_the_id() {
        let named = Value::object([("id", Value::Null), ("name", Value::from("lab"))]);
        assert_eq!(state_key(&named).unwrap(), Key::Name("lab".into()));
        let made = named
            .clone()
            .with("id", "1b4e28ba-2fa1-11d2-883f-0016d3cca427");
        assert_eq!(
            state_key(&made).unwrap(),
            Key::Uuid("1b4e28ba-2fa1-11d2-883f-0016d3cca427".into())
        );
        let neither = Value::object([("id", Value::Null), ("name", Value::Null)]);
        assert!(state_key(&neither).is_err());
    }

    #[test]
    fn import_of_nothing_names_the_kind_and_where_to_look() {
        let kind = Kind {
            title: "Network",
            libvirt: "network",
            list: "virsh net-list --all",
        };
        let found = imported(kind, "lab", Some(Value::from("x"))).unwrap();
        assert_eq!(found, [Value::from("x")]);
        let d = imported(kind, "lab", None).unwrap_err();
        let text = d.to_string();
        assert!(text.contains("Network not found"), "{text}");
        assert!(text.contains("no network named \"lab\""), "{text}");
        assert!(text.contains("`virsh net-list --all`"), "{text}");
    }
}
