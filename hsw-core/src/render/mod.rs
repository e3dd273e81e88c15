//! Rendering: pure functions from a validated [`ClusterConfig`](crate::config::ClusterConfig) and its
//! [`GpuPlan`](crate::gpu::GpuPlan) to the text of generated files. Nothing here reads or writes files; the
//! binaries do (`hsw-cli generate`). [`module_docs`] renders the modules' README tables from their own `.tf` files.

pub mod gpu;
pub mod hcl;
pub mod module_docs;
pub mod terraform;
