//! A test-only provider built on the framework: `hsw_test_file` (a resource whose state lives in a JSON file per
//! object under the provider's `state_dir`) and the data source of the same name. It exercises every framework
//! feature Terraform sees: required, optional, computed, optional+computed, sensitive and replace-forcing
//! attributes, a map attribute (the Terraform 1.0.3 planned-value trap), a list block, import, upgrade, data
//! sources.
//!
//! This code is only in tests: the real `terraform-provider-hsw` binary never contains it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use terraform_provider_hsw::framework::json::{from_json, to_json, JsonOptions};
use terraform_provider_hsw::framework::*;

/// The test provider.
#[derive(Debug, Default)]
pub struct TestProvider {
    state_dir: Arc<OnceLock<PathBuf>>,
}

#[async_trait]
impl Provider for TestProvider {
    fn schema(&self) -> Schema {
        Schema::new(Block::new().describe("Test provider.").attribute(
            Attribute::required("state_dir", Type::String).describe("Where objects are stored."),
        ))
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        if let Some(dir) = config.get("state_dir").as_str() {
            if !dir.starts_with('/') {
                d.push(
                    Diagnostic::error(
                        "state_dir must be absolute",
                        format!("{dir:?} is relative."),
                    )
                    .at(AttrPath::attr("state_dir")),
                );
            }
        }
        d
    }

    async fn configure(
        &self,
        _ctx: &Context,
        _tf: &str,
        config: &Value,
    ) -> Result<(), Diagnostics> {
        let dir = config.get("state_dir").as_str().ok_or_else(|| {
            Diagnostics::error_at(
                AttrPath::attr("state_dir"),
                "state_dir must be known",
                "It was unknown or null.",
            )
        })?;
        let _ = self.state_dir.set(PathBuf::from(dir));
        Ok(())
    }

    fn resources(&self) -> Vec<Arc<dyn Resource>> {
        vec![Arc::new(FileResource {
            state_dir: self.state_dir.clone(),
        })]
    }

    fn data_sources(&self) -> Vec<Arc<dyn DataSource>> {
        vec![Arc::new(FileData {
            state_dir: self.state_dir.clone(),
        })]
    }
}

/// `hsw_test_file`.
#[derive(Debug)]
pub struct FileResource {
    state_dir: Arc<OnceLock<PathBuf>>,
}

/// The resource's schema (version 1: version 0 called `content` `body`).
pub fn file_schema() -> Schema {
    Schema::new(
        Block::new()
            .describe("A file holding an object's state.")
            .attribute(Attribute::computed("id", Type::String).describe("The object id."))
            .attribute(
                Attribute::required("name", Type::String)
                    .requires_replace()
                    .describe("Name; changing it replaces the object."),
            )
            .attribute(Attribute::optional("content", Type::String))
            .attribute(Attribute::optional("tags", Type::map(Type::String)))
            .attribute(
                Attribute::optional("labels", Type::map(Type::String))
                    .describe("Set to {} in tests: must stay an empty map."),
            )
            .attribute(Attribute::optional("secret", Type::String).sensitive())
            .attribute(
                Attribute::optional_computed("mode", Type::String).describe("Defaults to 0644."),
            )
            .attribute(Attribute::computed("size", Type::Number))
            .block(NestedBlock::new(
                "rule",
                Nesting::List,
                Block::new()
                    .attribute(Attribute::required("port", Type::Number))
                    .attribute(Attribute::optional("note", Type::String)),
            )),
    )
    .version(1)
}

fn dir(state_dir: &OnceLock<PathBuf>) -> Result<&Path, Diagnostics> {
    state_dir.get().map(PathBuf::as_path).ok_or_else(|| {
        Diagnostics::error(
            "Provider not configured",
            "ConfigureProvider was not called.",
        )
    })
}

fn object_path(state_dir: &OnceLock<PathBuf>, id: &str) -> Result<PathBuf, Diagnostics> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Diagnostics::error(
            "Invalid id",
            format!("{id:?} is not an object id."),
        ));
    }
    Ok(dir(state_dir)?.join(format!("{id}.json")))
}

fn load(state_dir: &OnceLock<PathBuf>, id: &str) -> Result<Option<Value>, Diagnostics> {
    let path = object_path(state_dir, id)?;
    match std::fs::read(&path) {
        Ok(bytes) => {
            let j: serde_json::Value = serde_json::from_slice(&bytes)?;
            Ok(Some(from_json(
                &file_schema().ty(),
                &j,
                JsonOptions::default(),
            )?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn store(state_dir: &OnceLock<PathBuf>, v: &Value) -> Result<(), Diagnostics> {
    let id = v.get("id").as_str().unwrap_or_default();
    let j = to_json(&file_schema().ty(), v)?;
    std::fs::write(object_path(state_dir, id)?, serde_json::to_vec_pretty(&j)?)?;
    Ok(())
}

fn finish(mut v: Value) -> Value {
    let size = v.get("content").as_str().map_or(0, str::len);
    v.set("size", i64::try_from(size).unwrap_or(i64::MAX));
    if v.get("mode").is_unknown() || v.get("mode").is_null() {
        v.set("mode", "0644");
    }
    v
}

#[async_trait]
impl Resource for FileResource {
    fn type_name(&self) -> &str {
        "hsw_test_file"
    }

    fn schema(&self) -> Schema {
        file_schema()
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        let mut d = Diagnostics::new();
        if let Some(rules) = config.get("rule").as_slice() {
            for (i, r) in rules.iter().enumerate() {
                if r.get("port")
                    .as_i64()
                    .is_some_and(|p| !(1..=65535).contains(&p))
                {
                    d.push(
                        Diagnostic::error("Invalid port", "A port is between 1 and 65535.")
                            .at(AttrPath::attr("rule").then_index(i).then_attr("port")),
                    );
                }
            }
        }
        d
    }

    fn upgrade_state(
        &self,
        schema: &Schema,
        version: i64,
        raw: &serde_json::Value,
    ) -> Result<Value, Diagnostics> {
        if version == 0 {
            let mut raw = raw.clone();
            if let Some(obj) = raw.as_object_mut() {
                if let Some(body) = obj.remove("body") {
                    obj.insert("content".into(), body);
                }
            }
            return default_upgrade_state(schema, schema.version, &raw);
        }
        default_upgrade_state(schema, version, raw)
    }

    fn plan(&self, req: &PlanRequest<'_>) -> Result<PlanOutcome, Diagnostics> {
        let mut out = req.default_plan();
        // size follows content: unknown when content changes.
        if !req.is_create() && req.prior.get("content") != out.planned.get("content") {
            out.planned.set("size", Value::Unknown);
        }
        Ok(out)
    }

    async fn create(&self, ctx: &Context, planned: &Value) -> Result<Value, Diagnostics> {
        if ctx.is_stopping() {
            return Err(Diagnostics::error(
                "Interrupted",
                "Terraform asked the provider to stop before the file was written.",
            ));
        }
        let name = planned.get("name").as_str().unwrap_or_default();
        let id = format!("{name}-{}", std::process::id());
        let v = finish(planned.clone().with("id", id));
        store(&self.state_dir, &v)?;
        Ok(v)
    }

    async fn update(
        &self,
        _ctx: &Context,
        _prior: &Value,
        planned: &Value,
    ) -> Result<Value, Diagnostics> {
        let v = finish(planned.clone());
        store(&self.state_dir, &v)?;
        Ok(v)
    }

    async fn delete(&self, _ctx: &Context, state: &Value) -> Result<(), Diagnostics> {
        let path = object_path(
            &self.state_dir,
            state.get("id").as_str().unwrap_or_default(),
        )?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn read(&self, _ctx: &Context, state: &Value) -> Result<Option<Value>, Diagnostics> {
        load(
            &self.state_dir,
            state.get("id").as_str().unwrap_or_default(),
        )
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<Vec<Value>, Diagnostics> {
        match load(&self.state_dir, id)? {
            Some(_) => Ok(vec![file_schema().block.null_object().with("id", id)]),
            None => Err(Diagnostics::error(
                "Object not found",
                format!("There is no object {id:?} to import."),
            )),
        }
    }
}

/// The `hsw_test_file` data source.
#[derive(Debug)]
pub struct FileData {
    state_dir: Arc<OnceLock<PathBuf>>,
}

#[async_trait]
impl DataSource for FileData {
    fn type_name(&self) -> &str {
        "hsw_test_file"
    }

    fn schema(&self) -> Schema {
        Schema::new(
            Block::new()
                .attribute(Attribute::required("id", Type::String))
                .attribute(Attribute::computed("name", Type::String))
                .attribute(Attribute::computed("size", Type::Number))
                .attribute(Attribute::computed("tags", Type::map(Type::String))),
        )
    }

    async fn read(&self, _ctx: &Context, config: &Value) -> Result<Value, Diagnostics> {
        let id = config.get("id").as_str().unwrap_or_default();
        let obj = load(&self.state_dir, id)?.ok_or_else(|| {
            Diagnostics::error_at(
                AttrPath::attr("id"),
                "Object not found",
                format!("There is no object {id:?}."),
            )
        })?;
        Ok(config
            .clone()
            .with("name", obj.get("name").clone())
            .with("size", obj.get("size").clone())
            .with("tags", obj.get("tags").clone()))
    }
}
