//! `hsw_host`: facts about the libvirt host, and the accelerator `accelerator = "auto"` picks.

use crate::framework::{
    async_trait, Attribute, Block, Context, DataSource, Diagnostics, Schema, Type, Value,
};

use super::{configured, Shared};

/// The `hsw_host` data source.
#[derive(Debug)]
pub struct HostDataSource {
    shared: Shared,
}

impl HostDataSource {
    /// The data source, reaching the provider's backend through `shared`.
    pub fn new(shared: Shared) -> HostDataSource {
        HostDataSource { shared }
    }
}

/// The schema of `hsw_host`.
pub fn schema() -> Schema {
    Schema::new(
        Block::new()
            .describe("Facts about the host the provider's libvirt runs on: versions, CPUs, memory, and whether KVM can run guests.")
            .attribute(Attribute::computed("id", Type::String).describe("The libvirt URI the facts come from."))
            .attribute(Attribute::computed("libvirt_version", Type::String).describe("The libvirt library version, such as `9.0.0`."))
            .attribute(Attribute::computed("hypervisor_version", Type::String).describe("The hypervisor (QEMU) version, such as `7.2.0`."))
            .attribute(Attribute::computed("driver", Type::String).describe("The libvirt driver, such as `QEMU`."))
            .attribute(Attribute::computed("cpus", Type::Number).describe("Logical CPUs."))
            .attribute(Attribute::computed("memory_mib", Type::Number).describe("Memory in MiB."))
            .attribute(Attribute::computed("kvm_usable", Type::Bool).describe(
                "Whether KVM can run guests: libvirt offers KVM guests for the host architecture and the host CPU shows \
                 hardware virtualisation (vmx or svm; often hidden under nested virtualisation).",
            ))
            .attribute(Attribute::computed("auto_accelerator", Type::String).describe("What `accelerator = \"auto\"` picks on this host: `kvm` or `tcg`."))
            .attribute(Attribute::computed("pool_dir", Type::String).describe("The provider's pool directory.")),
    )
}

#[async_trait]
impl DataSource for HostDataSource {
    fn type_name(&self) -> &str {
        "hsw_host"
    }

    fn schema(&self) -> Schema {
        schema()
    }

    async fn read(&self, _ctx: &Context, _config: &Value) -> Result<Value, Diagnostics> {
        let c = configured(&self.shared)?;
        let h = c.backend.libvirt.host_info().await.map_err(|e| {
            Diagnostics::error(
                "Cannot read host facts",
                format!(
                    "libvirt at {} could not describe the host: {}.",
                    c.config.uri, e.message
                ),
            )
        })?;
        Ok(schema()
            .block
            .null_object()
            .with("id", c.config.uri.clone())
            .with("libvirt_version", h.libvirt_version)
            .with("hypervisor_version", h.hypervisor_version)
            .with("driver", h.driver)
            .with("cpus", h.cpus)
            .with("memory_mib", h.memory_mib)
            .with("kvm_usable", h.kvm_usable)
            .with("auto_accelerator", if h.kvm_usable { "kvm" } else { "tcg" })
            .with("pool_dir", c.config.pool_dir.display().to_string()))
    }
}
