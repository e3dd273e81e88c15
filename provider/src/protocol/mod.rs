//! The plugin protocol: go-plugin's handshake, TLS and services, and tfplugin6 over gRPC. This module is the only
//! one that knows protobuf, msgpack and gRPC; it turns requests into calls on [`crate::framework`] traits.
//!
//! - [`serve()`][serve()] is the entry point of a provider binary (handshake, listener, TLS, shutdown; see
//!   the [`serve`](mod@serve) module);
//! - [`server`] holds the tfplugin6 `Provider` service and go-plugin's controller and stdio services;
//! - [`tls`] does AutoMTLS;
//! - [`msgpack`] puts values on the wire;
//! - [`tfplugin6`] and [`go_plugin`] are generated from `proto/`.

mod convert;
pub mod msgpack;
pub mod serve;
pub mod server;
pub mod tls;

pub use serve::{serve, ServeOptions};

/// Code generated from `proto/tfplugin6.5.proto` (Terraform plugin protocol 6.5).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// Code generated from `proto/go_plugin.proto` (go-plugin's controller and stdio services).
#[allow(
    missing_docs,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod go_plugin {
    tonic::include_proto!("plugin");
}
