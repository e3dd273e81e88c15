//! The traits resources, data sources and the provider implement, and the plan helpers.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::diagnostics::{AttrPath, Diagnostics};
use super::json::{from_json, JsonOptions};
use super::schema::{Block, Nesting, Schema};
use super::value::Value;

/// What every call into a resource gets besides its values: whether Terraform asked the provider to stop
/// (the user pressed Ctrl-C). Long operations should watch [`Context::stopping`] and return early with an error.
#[derive(Debug, Clone)]
pub struct Context {
    stop: watch::Receiver<bool>,
    /// Keeps the sender of a detached context alive, so that it never reads as stopped.
    _detached: Option<Arc<watch::Sender<bool>>>,
}

impl Context {
    /// A context that stops when `stop` turns true.
    pub fn new(stop: watch::Receiver<bool>) -> Context {
        Context {
            stop,
            _detached: None,
        }
    }

    /// A context that never stops (for unit tests of resources).
    pub fn detached() -> Context {
        let (tx, rx) = watch::channel(false);
        Context {
            stop: rx,
            _detached: Some(Arc::new(tx)),
        }
    }

    /// Whether Terraform asked the provider to stop.
    pub fn is_stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Completes when Terraform asks the provider to stop (or the server goes away). Use in `tokio::select!`.
    pub async fn stopping(&self) {
        let mut rx = self.stop.clone();
        // An error means the sender is gone: the server is shutting down, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// The values of a `PlanResourceChange` call.
#[derive(Debug, Clone, Copy)]
pub struct PlanRequest<'a> {
    /// The resource's schema.
    pub schema: &'a Schema,
    /// The current state; null when the resource is being created.
    pub prior: &'a Value,
    /// Terraform's proposal: the configuration, with prior values filled in for computed attributes the
    /// configuration leaves null. May contain unknown values (configuration that depends on other resources).
    pub proposed: &'a Value,
    /// The configuration as written (null for attributes not set). May contain unknown values.
    pub config: &'a Value,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanOutcome {
    /// The planned new state. Where the configuration sets a non-computed attribute, the planned value must equal
    /// it exactly (Terraform rejects the plan otherwise). Values the provider will only know after apply are
    /// [`Value::Unknown`].
    pub planned: Value,
    /// Attributes whose change forces replacement (destroy then create).
    pub requires_replace: Vec<AttrPath>,
    /// Warnings to show (errors are returned as `Err`).
    pub diagnostics: Diagnostics,
}

impl PlanRequest<'_> {
    /// Whether the resource is being created (no prior state).
    pub fn is_create(&self) -> bool {
        self.prior.is_null()
    }

    /// The plan that fits most resources:
    ///
    /// - the planned state is Terraform's proposal;
    /// - attributes marked [`crate::framework::Attribute::requires_replace`] that differ from the prior state
    ///   (or are unknown) force replacement; in nested blocks, a block whose content holds such an attribute and
    ///   differs forces replacement at the block;
    /// - when creating or replacing, computed attributes the configuration leaves null become unknown ("known
    ///   after apply"); when updating in place they keep their prior values.
    pub fn default_plan(&self) -> PlanOutcome {
        let mut planned = self.proposed.clone();
        let mut requires_replace = Vec::new();
        if !self.is_create() {
            replace_paths(
                &self.schema.block,
                self.prior,
                &planned,
                &AttrPath::root(),
                &mut requires_replace,
            );
        }
        if self.is_create() || !requires_replace.is_empty() {
            mark_computed_unknown(&self.schema.block, &mut planned, self.config);
        }
        PlanOutcome {
            planned,
            requires_replace,
            diagnostics: Diagnostics::new(),
        }
    }
}

fn block_has_replace(block: &Block) -> bool {
    block.attributes.iter().any(|a| a.requires_replace)
        || block.blocks.iter().any(|b| block_has_replace(&b.block))
}

fn replace_paths(
    block: &Block,
    prior: &Value,
    planned: &Value,
    at: &AttrPath,
    out: &mut Vec<AttrPath>,
) {
    for a in block.attributes.iter().filter(|a| a.requires_replace) {
        let (p, n) = (prior.get(&a.name), planned.get(&a.name));
        if p != n || !n.is_wholly_known() {
            out.push(at.then_attr(a.name.as_str()));
        }
    }
    for b in block.blocks.iter().filter(|b| block_has_replace(&b.block)) {
        let (p, n) = (prior.get(&b.type_name), planned.get(&b.type_name));
        if p != n || !n.is_wholly_known() {
            out.push(at.then_attr(b.type_name.as_str()));
        }
    }
}

/// Checks Terraform's rule for planned values: a non-computed attribute must be planned exactly as configured
/// (null when not configured), and an optional+computed one exactly as configured when it is configured.
/// Returns the paths that break it. Terraform 1.0 rejects such plans ("planned value ... does not match config
/// value"); the server runs this check after [`Resource::plan`] to name the attribute and blame the provider.
/// Nested single, group, list and map blocks are checked element by element; set blocks only by size.
pub fn plan_violations(
    block: &Block,
    config: &Value,
    planned: &Value,
    at: &AttrPath,
    out: &mut Vec<AttrPath>,
) {
    match (config, planned) {
        (Value::Unknown, Value::Unknown) | (Value::Null, Value::Null) => return,
        (Value::Unknown | Value::Null, _) | (_, Value::Unknown | Value::Null) => {
            out.push(at.clone());
            return;
        }
        _ => {}
    }
    for a in &block.attributes {
        let (c, p) = (config.get(&a.name), planned.get(&a.name));
        let must_match = !a.computed || !c.is_null();
        if must_match && c != p {
            out.push(at.then_attr(a.name.as_str()));
        }
    }
    for b in &block.blocks {
        let here = at.then_attr(b.type_name.as_str());
        let (c, p) = (config.get(&b.type_name), planned.get(&b.type_name));
        match (b.nesting, c, p) {
            (Nesting::Single | Nesting::Group, c, p) => plan_violations(&b.block, c, p, &here, out),
            (Nesting::List, Value::List(cs), Value::List(ps)) if cs.len() == ps.len() => {
                for (i, (c, p)) in cs.iter().zip(ps).enumerate() {
                    plan_violations(&b.block, c, p, &here.then_index(i), out);
                }
            }
            (Nesting::Map, Value::Map(cs), Value::Map(ps)) if cs.len() == ps.len() => {
                for (k, c) in cs {
                    match ps.get(k) {
                        Some(p) => plan_violations(&b.block, c, p, &here.then_key(k.as_str()), out),
                        None => out.push(here.then_key(k.as_str())),
                    }
                }
            }
            (Nesting::Set, Value::Set(cs), Value::Set(ps)) if cs.len() == ps.len() => {}
            (_, c, p) if c.is_unknown() && p.is_unknown() => {}
            _ => out.push(here),
        }
    }
}

/// Sets every computed attribute that `config` leaves null to unknown, in `planned` (an object of `block`'s
/// type), recursing into single, group, list and map nested blocks (set blocks are left alone: their elements
/// cannot be matched to configuration by position).
pub fn mark_computed_unknown(block: &Block, planned: &mut Value, config: &Value) {
    let Value::Object(attrs) = planned else {
        return;
    };
    for a in block.attributes.iter().filter(|a| a.computed) {
        if config.get(&a.name).is_null() {
            attrs.insert(a.name.clone(), Value::Unknown);
        }
    }
    for b in &block.blocks {
        let cfg = config.get(&b.type_name);
        let Some(v) = attrs.get_mut(&b.type_name) else {
            continue;
        };
        match (b.nesting, v) {
            (Nesting::Single | Nesting::Group, v @ Value::Object(_)) => {
                mark_computed_unknown(&b.block, v, cfg)
            }
            (Nesting::List, Value::List(items)) => {
                let cfg_items = cfg.as_slice().unwrap_or_default();
                for (i, item) in items.iter_mut().enumerate() {
                    mark_computed_unknown(&b.block, item, cfg_items.get(i).unwrap_or(&Value::Null));
                }
            }
            (Nesting::Map, Value::Map(items)) => {
                for (k, item) in items.iter_mut() {
                    mark_computed_unknown(&b.block, item, cfg.get(k));
                }
            }
            _ => {}
        }
    }
}

/// The default [`Resource::upgrade_state`]: state of the current version is read with the current schema
/// (attributes no longer in the schema are dropped); other versions are refused.
pub fn default_upgrade_state(
    schema: &Schema,
    version: i64,
    raw: &serde_json::Value,
) -> Result<Value, Diagnostics> {
    if version > schema.version {
        return Err(Diagnostics::error(
            "Resource state is from a newer provider",
            format!(
                "The state was written with schema version {version}, but this provider knows versions up to {}. \
                 Use the provider version that wrote it, or a newer one.",
                schema.version
            ),
        ));
    }
    if version < schema.version {
        return Err(Diagnostics::error(
            "Resource state cannot be upgraded",
            format!(
                "The state was written with schema version {version}, and this provider has no upgrade from it to \
                 version {}. This is a bug in the provider.",
                schema.version
            ),
        ));
    }
    from_json(&schema.ty(), raw, JsonOptions { ignore_undefined_attributes: true }).map_err(|e| {
        Diagnostics::error(
            "Stored resource state does not match the schema",
            format!("{e}. The state file may have been edited by hand, or written by another provider version."),
        )
    })
}

/// A managed resource type (`resource "hsw_x" "name" { ... }`).
///
/// Implementations see only [`Value`]s of their schema's type, never the wire format. All values passed in are
/// objects of the schema's type ([`Schema::ty`]); values returned must be too (the server checks and reports a
/// mismatch as an error naming the attribute). Methods may be called concurrently, for different resources of
/// this type: keep shared state behind a lock.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// The full type name, starting with the provider name: `hsw_network`.
    fn type_name(&self) -> &str;

    /// The schema. Called once when the server starts.
    fn schema(&self) -> Schema;

    /// Checks a configuration beyond what the schema says (value ranges, combinations). The configuration may
    /// hold unknown values: check only what is known. Return errors and warnings, with attribute paths.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Turns stored state written with schema `version` (as JSON, in that version's shape) into a value of the
    /// current schema. Override when bumping [`Schema::version`]; see [`default_upgrade_state`].
    fn upgrade_state(
        &self,
        schema: &Schema,
        version: i64,
        raw: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
        default_upgrade_state(schema, version, raw)
    }

    /// Plans a create or update (never a destroy). The default is [`PlanRequest::default_plan`].
    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        Ok(req.default_plan())
    }

    /// Creates the object. `planned` is the planned state, with unknown values where the plan said "known after
    /// apply"; return the new state with every value known.
    async fn create(&self, ctx: &Context, planned: &Value) -> Result<Value, Diagnostics>;

    /// Updates the object in place from `prior` to `planned`. Only called when some attribute changed and none
    /// forced replacement; the default refuses (fine for resources whose every argument requires replacement).
    async fn update(
        &self,
        _ctx: &Context,
        _prior: &Value,
        _planned: &Value,
    ) -> Result<Value, Diagnostics> {
        Err(Diagnostics::error(
            "Resource cannot be updated in place",
            format!("{} does not support in-place updates. This is a bug in the provider: the changed attribute should require replacement.", self.type_name()),
        ))
    }

    /// Deletes the object. Deleting something already gone should succeed.
    async fn delete(&self, ctx: &Context, state: &Value) -> Result<(), Diagnostics>;

    /// Reads the object's current state (refresh). `Ok(None)` means it no longer exists: Terraform then plans to
    /// create it again.
    async fn read(&self, ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics>;

    /// Imports an existing object by the id the user gave to `terraform import`. Return one or more states
    /// (often just the identifying attributes, from [`Block::null_object`]); Terraform then calls
    /// [`Resource::read`] on each. The default refuses.
    async fn import(&self, _ctx: &Context, _id: &str) -> Result<Vec<Value>, Diagnostics> {
        Err(Diagnostics::error(
            "Resource cannot be imported",
            format!("{} does not support import.", self.type_name()),
        ))
    }
}

/// A data source (`data "hsw_x" "name" { ... }`): reads something that exists.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// The full type name, starting with the provider name.
    fn type_name(&self) -> &str;

    /// The schema. Called once when the server starts.
    fn schema(&self) -> Schema;

    /// Checks a configuration beyond what the schema says; it may hold unknown values.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Reads the data. `config` is wholly known; return it with the computed attributes filled in.
    async fn read(&self, ctx: &Context, config: &Value) -> Result<Value, Diagnostics>;
}

/// The provider: its own configuration (`provider "hsw" { ... }`) and the resource and data source types it
/// serves. Resources that need the configured connection share it with the provider (e.g. an
/// `Arc<OnceLock<...>>` given to each resource when [`Provider::resources`] builds them).
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The schema of the provider block. Default: no arguments.
    fn schema(&self) -> Schema {
        Schema::new(Block::new())
    }

    /// Checks a provider configuration beyond what the schema says; it may hold unknown values.
    fn validate(&self, _config: &Value) -> Diagnostics {
        Diagnostics::new()
    }

    /// Receives the provider configuration, once, before any resource is planned, applied or read.
    /// `config` may hold unknown values when it refers to resources not created yet.
    async fn configure(
        &self,
        _ctx: &Context,
        _terraform_version: &str,
        _config: &Value,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }

    /// The resource types. Called once when the server starts.
    fn resources(&self) -> Vec<Arc<dyn Resource>>;

    /// The data source types. Called once when the server starts.
    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Attribute, NestedBlock, Type};

    fn schema() -> Schema {
        Schema::new(
            Block::new()
                .attribute(Attribute::computed("id", Type::String))
                .attribute(Attribute::required("name", Type::String).requires_replace())
                .attribute(Attribute::optional("tags", Type::map(Type::String)))
                .attribute(Attribute::optional_computed("size", Type::Number))
                .block(NestedBlock::new(
                    "disk",
                    Nesting::List,
                    Block::new()
                        .attribute(Attribute::required("gb", Type::Number))
                        .attribute(Attribute::computed("path", Type::String)),
                )),
        )
    }

    fn config() -> Value {
        Value::object([
            ("id", Value::Null),
            ("name", "a".into()),
            ("tags", Value::map([("k", Value::from("v"))])),
            ("size", Value::Null),
            (
                "disk",
                Value::List(vec![Value::object([
                    ("gb", 1i64.into()),
                    ("path", Value::Null),
                ])]),
            ),
        ])
    }

    #[test]
    fn create_marks_computed_unknown_and_keeps_config() {
        let s = schema();
        let cfg = config();
        let out = PlanRequest {
            schema: &s,
            prior: &Value::Null,
            proposed: &cfg,
            config: &cfg,
        }
        .default_plan();
        assert!(out.planned.get("id").is_unknown());
        assert!(out.planned.get("size").is_unknown());
        assert_eq!(out.planned.get("tags"), cfg.get("tags"));
        assert!(out.planned.get("disk").as_slice().unwrap()[0]
            .get("path")
            .is_unknown());
        assert!(out.requires_replace.is_empty());
    }

    #[test]
    fn update_keeps_prior_computed_and_detects_replacement() {
        let s = schema();
        let cfg = config();
        let prior = cfg.clone().with("id", "x").with("size", 5i64);
        let proposed = prior.clone().with("tags", Value::Null);
        let out = PlanRequest {
            schema: &s,
            prior: &prior,
            proposed: &proposed,
            config: &cfg,
        }
        .default_plan();
        assert_eq!(out.planned.get("id").as_str(), Some("x"));
        assert!(out.requires_replace.is_empty());

        let proposed = prior.clone().with("name", "b");
        let cfg = cfg.with("name", "b");
        let out = PlanRequest {
            schema: &s,
            prior: &prior,
            proposed: &proposed,
            config: &cfg,
        }
        .default_plan();
        assert_eq!(out.requires_replace, vec![AttrPath::attr("name")]);
        assert!(out.planned.get("id").is_unknown());
    }

    #[test]
    fn plan_violations_name_the_attribute() {
        let s = schema();
        let cfg = config();
        let mut out = Vec::new();
        let good = PlanRequest {
            schema: &s,
            prior: &Value::Null,
            proposed: &cfg,
            config: &cfg,
        }
        .default_plan();
        plan_violations(&s.block, &cfg, &good.planned, &AttrPath::root(), &mut out);
        assert!(out.is_empty(), "{out:?}");
        // The Terraform 1.0.3 trap: a configured map planned as null.
        let bad = good.planned.clone().with("tags", Value::Null);
        plan_violations(&s.block, &cfg, &bad, &AttrPath::root(), &mut out);
        assert_eq!(out, vec![AttrPath::attr("tags")]);
        // A configured block attribute changed.
        let mut out = Vec::new();
        let bad = good.planned.clone().with(
            "disk",
            Value::List(vec![Value::object([
                ("gb", 2i64.into()),
                ("path", Value::Unknown),
            ])]),
        );
        plan_violations(&s.block, &cfg, &bad, &AttrPath::root(), &mut out);
        assert_eq!(
            out,
            vec![AttrPath::attr("disk").then_index(0).then_attr("gb")]
        );
    }

    #[test]
    fn upgrade_default() {
        let s = schema().version(1);
        let raw = serde_json::json!({"id": "x", "name": "a", "removed": true});
        let v = default_upgrade_state(&s, 1, &raw).unwrap();
        assert_eq!(v.get("id").as_str(), Some("x"));
        assert!(default_upgrade_state(&s, 0, &raw).is_err());
        assert!(default_upgrade_state(&s, 2, &raw).is_err());
    }
}
