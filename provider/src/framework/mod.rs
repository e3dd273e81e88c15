//! What resources are written against: values, schemas, diagnostics and the [`Resource`], [`DataSource`] and
//! [`Provider`] traits. Nothing here knows the plugin protocol (protobuf, msgpack, gRPC): that is
//! [`crate::protocol`]'s job.
//!
//! A resource in brief:
//!
//! ```
//! use terraform_provider_hsw::framework::*;
//!
//! struct Thing;
//!
//! #[async_trait]
//! impl Resource for Thing {
//!     fn type_name(&self) -> &str { "hsw_thing" }
//!     fn schema(&self) -> Schema {
//!         Schema::new(Block::new()
//!             .describe("A thing.")
//!             .attribute(Attribute::computed("id", Type::String).describe("The thing's id."))
//!             .attribute(Attribute::required("name", Type::String).requires_replace().describe("Its name.")))
//!     }
//!     async fn create(&self, _ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
//!         let name = planned.get("name").as_str().unwrap_or_default().to_owned();
//!         Ok(planned.clone().with("id", name))
//!     }
//!     async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
//!         Ok(Some(state.clone()))
//!     }
//!     async fn delete(&self, _ctx: &Context, _state: &Value) -> Result<(), Diagnostics> { Ok(()) }
//! }
//! ```

mod diagnostics;
pub mod json;
mod resource;
mod schema;
mod value;

/// The attribute to put on `impl Resource for ...` blocks (re-exported so resources need no dependency).
pub use async_trait::async_trait;
pub use diagnostics::{AttrPath, Diagnostic, Diagnostics, PathStep, Severity};
pub use resource::{
    default_upgrade_state, mark_computed_unknown, plan_violations, Context, DataSource,
    PlanOutcome, PlanRequest, Provider, Resource,
};
pub use schema::{Attribute, Block, NestedBlock, Nesting, Schema};
pub use value::{
    over_byte_limit, over_node_limit, Number, Type, TypeSpecError, Value, MAX_DEPTH,
    MAX_VALUE_BYTES, MAX_VALUE_NODES,
};
