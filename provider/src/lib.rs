//! The hsw Terraform provider: a tfplugin6 server ([`protocol`]) over a small resource framework
//! ([`framework`]), and the hsw provider itself ([`hsw`]).
//!
//! Layers, each knowing only the one below:
//!
//! - [`hsw`]: the provider's configuration and its resources and data sources;
//! - [`framework`]: values, schemas, diagnostics, and the `Resource` / `DataSource` / `Provider` traits;
//! - [`protocol`]: go-plugin handshake, AutoMTLS, gRPC, msgpack. Only this module knows tfplugin6.
//!
//! [`logging`] writes the hclog JSON lines Terraform reads from stderr.

pub mod backend;
pub mod framework;
pub mod hsw;
pub mod logging;
pub mod protocol;

/// The provider's source address.
pub const PROVIDER_ADDRESS: &str = "registry.terraform.io/hyperscaler/hsw";
