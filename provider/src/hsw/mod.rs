//! The hsw provider: its configuration block and the list of its resources and data sources.
//!
//! The provider arguments are not settled yet (`uri`, `pool_dir`, `gpu_backend` are planned): [`HswProvider`]
//! accepts an empty `provider "hsw" {}` block and keeps the configuration it receives, so that resources added
//! to [`HswProvider::resources`] can read it through [`HswProvider::config`].

use std::sync::{Arc, OnceLock};

use crate::framework::{
    async_trait, Block, Context, DataSource, Diagnostics, Provider, Resource, Schema, Value,
};

/// The configuration received from Terraform, shared between the provider and its resources.
pub type SharedConfig = Arc<OnceLock<Value>>;

/// The hsw provider.
#[derive(Debug, Default)]
pub struct HswProvider {
    config: SharedConfig,
}

impl HswProvider {
    /// The configuration handle resources keep (empty until Terraform calls `ConfigureProvider`).
    pub fn config(&self) -> SharedConfig {
        self.config.clone()
    }
}

#[async_trait]
impl Provider for HswProvider {
    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .describe("The hsw provider manages libvirt networks and VMs on the local host."),
        )
    }

    async fn configure(
        &self,
        _ctx: &Context,
        _terraform_version: &str,
        config: &Value,
    ) -> Result<(), Diagnostics> {
        // Terraform configures a provider once per process; a second call keeps the first configuration.
        let _ = self.config.set(config.clone());
        Ok(())
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        Vec::new()
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }
}
