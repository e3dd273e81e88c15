//! Drives the hsw provider through its tfplugin6 service the way Terraform does: validate, plan (with Terraform's
//! proposed new state), apply (checking the result against the plan, as Terraform does), read, import. Values go
//! through msgpack, so the protocol layer's checks run too.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use terraform_provider_hsw::backend::Backend;
use terraform_provider_hsw::framework::{Block, Nesting, Schema, Type, Value};
use terraform_provider_hsw::hsw::{provider_schema, HswProvider};
use terraform_provider_hsw::protocol::msgpack;
use terraform_provider_hsw::protocol::server::ProviderService;
use terraform_provider_hsw::protocol::tfplugin6 as pb;
use terraform_provider_hsw::protocol::tfplugin6::provider_server::Provider as _;
use tonic::Request;

/// A diagnostic as Terraform would show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    pub error: bool,
    pub summary: String,
    pub detail: String,
    /// The attribute path, as `a.b[0].c`.
    pub path: String,
}

impl std::fmt::Display for Diag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {}: {}", self.summary, self.path, self.detail)
    }
}

fn diags(d: &[pb::Diagnostic]) -> Vec<Diag> {
    d.iter()
        .map(|d| Diag {
            error: d.severity == pb::diagnostic::Severity::Error as i32,
            summary: d.summary.clone(),
            detail: d.detail.clone(),
            path: d
                .attribute
                .as_ref()
                .map(|p| {
                    let mut s = String::new();
                    for step in &p.steps {
                        match &step.selector {
                            Some(pb::attribute_path::step::Selector::AttributeName(n)) => {
                                if !s.is_empty() {
                                    s.push('.');
                                }
                                s.push_str(n);
                            }
                            Some(pb::attribute_path::step::Selector::ElementKeyInt(i)) => {
                                s.push_str(&format!("[{i}]"))
                            }
                            Some(pb::attribute_path::step::Selector::ElementKeyString(k)) => {
                                s.push_str(&format!("[{k:?}]"))
                            }
                            None => {}
                        }
                    }
                    s
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn errors_of(d: &[Diag]) -> Vec<Diag> {
    d.iter().filter(|d| d.error).cloned().collect()
}

/// The result of a plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub planned: Value,
    pub requires_replace: Vec<String>,
}

impl Plan {
    /// Whether Terraform would show no change.
    pub fn is_empty(&self, prior: &Value) -> bool {
        self.requires_replace.is_empty() && &self.planned == prior
    }
}

/// Terraform in a box.
pub struct Tf {
    pub svc: ProviderService,
    schemas: BTreeMap<String, Schema>,
}

fn dv(ty: &Type, v: &Value) -> Option<pb::DynamicValue> {
    Some(pb::DynamicValue {
        msgpack: msgpack::encode(ty, v).expect("encodable value"),
        json: Vec::new(),
    })
}

fn value(ty: &Type, dv: Option<&pb::DynamicValue>) -> Value {
    dv.map(|d| msgpack::decode(ty, &d.msgpack).expect("decodable value"))
        .unwrap_or(Value::Null)
}

/// Terraform's proposed new state: the configuration, with prior values for computed attributes it leaves null.
pub fn proposed(block: &Block, prior: &Value, config: &Value) -> Value {
    if config.is_null() || config.is_unknown() {
        return config.clone();
    }
    let mut out = config.clone();
    for a in &block.attributes {
        if a.computed && config.get(&a.name).is_null() {
            out.set(&a.name, prior.get(&a.name).clone());
        }
    }
    for b in &block.blocks {
        let (c, p) = (config.get(&b.type_name), prior.get(&b.type_name));
        let v = match (b.nesting, c) {
            (Nesting::Single | Nesting::Group, c) if !c.is_null() => proposed(&b.block, p, c),
            (Nesting::List, Value::List(items)) => Value::List(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        proposed(
                            &b.block,
                            p.as_slice().and_then(|s| s.get(i)).unwrap_or(&Value::Null),
                            item,
                        )
                    })
                    .collect(),
            ),
            (_, c) => c.clone(),
        };
        out.set(&b.type_name, v);
    }
    out
}

/// Terraform's check after apply: every known planned value is what the provider returned.
pub fn consistent(planned: &Value, new: &Value, at: &str) -> Result<(), String> {
    match (planned, new) {
        (Value::Unknown, _) => Ok(()),
        (Value::Object(p), Value::Object(n)) => {
            for (k, pv) in p {
                consistent(pv, n.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::List(p), Value::List(n)) if p.len() == n.len() => {
            for (i, (pv, nv)) in p.iter().zip(n).enumerate() {
                consistent(pv, nv, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        (p, n)
            if !p.is_wholly_known()
                && matches!((p, n), (Value::Set(a), Value::Set(b)) if a.len() == b.len()) =>
        {
            Ok(())
        }
        (p, n) if p == n => Ok(()),
        (p, n) => Err(format!(
            "Provider produced inconsistent result after apply: {at} was planned {p:?}, got {n:?}"
        )),
    }
}

impl Tf {
    /// A provider over `backend`, configured with `pool_dir` (and `uri`, only recorded).
    pub async fn new(backend: Backend, pool_dir: &str) -> Tf {
        Tf::configured(backend, pool_dir, &[]).await
    }

    /// [`Tf::new`], with more attributes of the provider block (`sysfs_root`, `gpu_backend`, ...).
    pub async fn configured(backend: Backend, pool_dir: &str, more: &[(&str, &str)]) -> Tf {
        let provider = HswProvider::with_factory(Arc::new(move |_cfg| {
            let b = backend.clone();
            Box::pin(async move { Ok(b) })
        }));
        let tf = Tf::over(provider);
        let mut cfg = provider_schema()
            .block
            .null_object()
            .with("uri", "test:///default")
            .with("pool_dir", pool_dir);
        for (k, v) in more {
            cfg.set(k, *v);
        }
        let d = tf.configure(&cfg).await;
        assert!(errors_of(&d).is_empty(), "{d:?}");
        tf
    }

    /// A service over a provider, not configured.
    pub fn over(provider: HswProvider) -> Tf {
        let p = Arc::new(provider);
        let mut schemas = BTreeMap::new();
        for r in terraform_provider_hsw::framework::Provider::resources(p.as_ref()) {
            schemas.insert(r.type_name().to_owned(), r.schema());
        }
        for d in terraform_provider_hsw::framework::Provider::data_sources(p.as_ref()) {
            schemas.insert(format!("data.{}", d.type_name()), d.schema());
        }
        Tf {
            svc: ProviderService::new(p),
            schemas,
        }
    }

    pub async fn configure(&self, cfg: &Value) -> Vec<Diag> {
        let ty = provider_schema().ty();
        let v = self
            .svc
            .validate_provider_config(Request::new(pb::validate_provider_config::Request {
                config: dv(&ty, cfg),
            }))
            .await
            .unwrap()
            .into_inner();
        let mut d = diags(&v.diagnostics);
        if !errors_of(&d).is_empty() {
            return d;
        }
        let r = self
            .svc
            .configure_provider(Request::new(pb::configure_provider::Request {
                terraform_version: "1.11.4".into(),
                config: dv(&ty, cfg),
            }))
            .await
            .unwrap()
            .into_inner();
        d.extend(diags(&r.diagnostics));
        d
    }

    pub fn schema(&self, type_name: &str) -> &Schema {
        &self.schemas[type_name]
    }

    fn ty(&self, type_name: &str) -> Type {
        self.schema(type_name).ty()
    }

    /// A configuration: the schema's null object with `attrs` set.
    pub fn config<'a>(
        &self,
        type_name: &str,
        attrs: impl IntoIterator<Item = (&'a str, Value)>,
    ) -> Value {
        let mut v = self.schema(type_name).block.null_object();
        for (k, x) in attrs {
            v.set(k, x);
        }
        v
    }

    pub async fn validate(&self, type_name: &str, config: &Value) -> Vec<Diag> {
        let r = self
            .svc
            .validate_resource_config(Request::new(pb::validate_resource_config::Request {
                type_name: type_name.into(),
                config: dv(&self.ty(type_name), config),
            }))
            .await
            .unwrap()
            .into_inner();
        diags(&r.diagnostics)
    }

    pub async fn plan(
        &self,
        type_name: &str,
        prior: &Value,
        config: &Value,
    ) -> Result<Plan, Vec<Diag>> {
        let ty = self.ty(type_name);
        let d = errors_of(&self.validate(type_name, config).await);
        if !d.is_empty() {
            return Err(d);
        }
        let prop = proposed(&self.schema(type_name).block, prior, config);
        let r = self
            .svc
            .plan_resource_change(Request::new(pb::plan_resource_change::Request {
                type_name: type_name.into(),
                prior_state: dv(&ty, prior),
                proposed_new_state: dv(&ty, &prop),
                config: dv(&ty, config),
                prior_private: Vec::new(),
                provider_meta: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let d = errors_of(&diags(&r.diagnostics));
        if !d.is_empty() {
            return Err(d);
        }
        Ok(Plan {
            planned: value(&ty, r.planned_state.as_ref()),
            requires_replace: r
                .requires_replace
                .iter()
                .map(|p| {
                    p.steps
                        .iter()
                        .filter_map(|s| match &s.selector {
                            Some(pb::attribute_path::step::Selector::AttributeName(n)) => {
                                Some(n.clone())
                            }
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .collect(),
        })
    }

    /// Applies a plan made earlier (what `terraform apply` of a saved plan does).
    pub async fn apply_raw(
        &self,
        type_name: &str,
        prior: &Value,
        planned: &Value,
        config: &Value,
    ) -> Result<Value, Vec<Diag>> {
        let ty = self.ty(type_name);
        let r = self
            .svc
            .apply_resource_change(Request::new(pb::apply_resource_change::Request {
                type_name: type_name.into(),
                prior_state: dv(&ty, prior),
                planned_state: dv(&ty, planned),
                config: dv(&ty, config),
                planned_private: Vec::new(),
                provider_meta: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let d = errors_of(&diags(&r.diagnostics));
        if !d.is_empty() {
            return Err(d);
        }
        let new = value(&ty, r.new_state.as_ref());
        if !planned.is_null() {
            consistent(planned, &new, type_name).map_err(|m| {
                vec![Diag {
                    error: true,
                    summary: m,
                    detail: String::new(),
                    path: String::new(),
                }]
            })?;
        }
        Ok(new)
    }

    /// Plans and applies like `terraform apply`: a replacement is a destroy then a create.
    pub async fn apply(
        &self,
        type_name: &str,
        prior: &Value,
        config: &Value,
    ) -> Result<Value, Vec<Diag>> {
        let plan = self.plan(type_name, prior, config).await?;
        if !plan.requires_replace.is_empty() && !prior.is_null() {
            self.destroy(type_name, prior).await?;
            let plan = self.plan(type_name, &Value::Null, config).await?;
            return self
                .apply_raw(type_name, &Value::Null, &plan.planned, config)
                .await;
        }
        if plan.is_empty(prior) {
            return Ok(prior.clone());
        }
        self.apply_raw(type_name, prior, &plan.planned, config)
            .await
    }

    pub async fn destroy(&self, type_name: &str, prior: &Value) -> Result<(), Vec<Diag>> {
        self.apply_raw(type_name, prior, &Value::Null, &Value::Null)
            .await
            .map(|_| ())
    }

    pub async fn read(&self, type_name: &str, state: &Value) -> Result<Value, Vec<Diag>> {
        let ty = self.ty(type_name);
        let r = self
            .svc
            .read_resource(Request::new(pb::read_resource::Request {
                type_name: type_name.into(),
                current_state: dv(&ty, state),
                private: Vec::new(),
                provider_meta: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let d = errors_of(&diags(&r.diagnostics));
        if !d.is_empty() {
            return Err(d);
        }
        Ok(value(&ty, r.new_state.as_ref()))
    }

    /// `terraform import`: import, then read.
    pub async fn import(&self, type_name: &str, id: &str) -> Result<Value, Vec<Diag>> {
        let ty = self.ty(type_name);
        let r = self
            .svc
            .import_resource_state(Request::new(pb::import_resource_state::Request {
                type_name: type_name.into(),
                id: id.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        let d = errors_of(&diags(&r.diagnostics));
        if !d.is_empty() {
            return Err(d);
        }
        let state = value(&ty, r.imported_resources[0].state.as_ref());
        self.read(type_name, &state).await
    }

    pub async fn data(&self, type_name: &str, config: &Value) -> Result<Value, Vec<Diag>> {
        let ty = self.schema(&format!("data.{type_name}")).ty();
        let r = self
            .svc
            .read_data_source(Request::new(pb::read_data_source::Request {
                type_name: type_name.into(),
                config: dv(&ty, config),
                provider_meta: None,
            }))
            .await
            .unwrap()
            .into_inner();
        let d = errors_of(&diags(&r.diagnostics));
        if !d.is_empty() {
            return Err(d);
        }
        Ok(value(&ty, r.state.as_ref()))
    }

    /// Applies, then checks what `terraform plan` would check next: read equals the state, and the plan is empty.
    pub async fn converge(&self, type_name: &str, prior: &Value, config: &Value) -> Value {
        let state = self
            .apply(type_name, prior, config)
            .await
            .unwrap_or_else(|d| panic!("apply failed: {d:#?}"));
        let read = self.read(type_name, &state).await.expect("read");
        assert_eq!(
            read, state,
            "read after apply should equal the applied state"
        );
        let plan = self.plan(type_name, &read, config).await.expect("plan");
        assert!(
            plan.is_empty(&read),
            "plan after apply should be empty: {plan:#?}\nstate: {read:#?}"
        );
        state
    }
}

/// A list of strings.
pub fn strings(items: &[&str]) -> Value {
    Value::List(items.iter().map(|s| Value::from(*s)).collect())
}

/// A path, for messages.
pub fn p(s: &str) -> &Path {
    Path::new(s)
}

/// Every file under `root` (itself included) that users other than the owner may read, or list when it is a
/// directory, as `path (mode)`; symbolic links are not followed. Empty when `root` is private throughout.
pub fn readable_by_others(root: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut found = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o044 != 0 {
            found.push(format!("{} ({mode:o})", p.display()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    found.sort();
    found
}
