//! The tfplugin6 `Provider` gRPC service, dispatching to the framework's [`Provider`], [`Resource`] and
//! [`DataSource`] implementations, and the go-plugin `GRPCController` and `GRPCStdio` services.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use crate::framework::{
    plan_violations, AttrPath, Context, DataSource, Diagnostic, Diagnostics, PlanRequest, Provider,
    Resource, Schema, Type, Value,
};

use super::convert::{
    decode_dynamic, diagnostics_to_pb, encode_dynamic, first_unknown, path_to_pb, schema_to_pb,
};
use super::go_plugin as gp;
use super::tfplugin6 as pb;

struct ResourceEntry {
    imp: Arc<dyn Resource>,
    schema: Schema,
    ty: Type,
}

struct DataSourceEntry {
    imp: Arc<dyn DataSource>,
    schema: Schema,
    ty: Type,
}

/// The tfplugin6 service over a framework provider.
pub struct ProviderService {
    provider: Arc<dyn Provider>,
    provider_schema: Schema,
    provider_ty: Type,
    resources: HashMap<String, ResourceEntry>,
    data_sources: HashMap<String, DataSourceEntry>,
    /// Problems found in the schemas at start-up, reported to Terraform by `GetProviderSchema`.
    schema_problems: Diagnostics,
    /// Turns true when Terraform sends `StopProvider`. Each `StopProvider` stops the calls in flight and puts a
    /// fresh sender here, so that later calls (`--debug` mode serves many Terraform runs) are not cancelled.
    stop: std::sync::Mutex<watch::Sender<bool>>,
}

impl std::fmt::Debug for ProviderService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderService")
            .field("resources", &self.resources.keys().collect::<Vec<_>>())
            .field(
                "data_sources",
                &self.data_sources.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

fn check_schema(kind: &str, name: &str, schema: &Schema, problems: &mut Diagnostics) {
    if let Err(diags) = schema.check() {
        for mut d in diags.0 {
            d.detail = format!(
                "In the schema of {kind} {name}: {} This is a bug in the provider.",
                d.detail
            );
            problems.push(d);
        }
    }
}

impl ProviderService {
    /// Collects the provider's resources, data sources and schemas.
    pub fn new(provider: Arc<dyn Provider>) -> ProviderService {
        let mut problems = Diagnostics::new();
        let provider_schema = provider.schema();
        check_schema(
            "the provider",
            "configuration",
            &provider_schema,
            &mut problems,
        );
        let mut resources = HashMap::new();
        for imp in provider.resources() {
            let schema = imp.schema();
            let name = imp.type_name().to_owned();
            check_schema("resource", &name, &schema, &mut problems);
            let ty = schema.ty();
            if resources
                .insert(name.clone(), ResourceEntry { imp, schema, ty })
                .is_some()
            {
                problems.add_error(
                    "Duplicate resource type",
                    format!("{name} is registered twice. This is a bug in the provider."),
                );
            }
        }
        let mut data_sources = HashMap::new();
        for imp in provider.data_sources() {
            let schema = imp.schema();
            let name = imp.type_name().to_owned();
            check_schema("data source", &name, &schema, &mut problems);
            let ty = schema.ty();
            if data_sources
                .insert(name.clone(), DataSourceEntry { imp, schema, ty })
                .is_some()
            {
                problems.add_error(
                    "Duplicate data source type",
                    format!("{name} is registered twice. This is a bug in the provider."),
                );
            }
        }
        let (stop, _) = watch::channel(false);
        ProviderService {
            provider_ty: provider_schema.ty(),
            provider,
            provider_schema,
            resources,
            data_sources,
            schema_problems: problems,
            stop: std::sync::Mutex::new(stop),
        }
    }

    fn stop_sender(&self) -> std::sync::MutexGuard<'_, watch::Sender<bool>> {
        self.stop
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn context(&self) -> Context {
        Context::new(self.stop_sender().subscribe())
    }

    /// Stops every call in flight; calls that start later get a fresh, running context.
    fn stop_calls_in_flight(&self) {
        let in_flight = std::mem::replace(&mut *self.stop_sender(), watch::channel(false).0);
        in_flight.send_replace(true);
    }

    fn resource(&self, name: &str) -> Result<&ResourceEntry, Diagnostics> {
        self.resources.get(name).ok_or_else(|| {
            Diagnostics::error(
                "Unknown resource type",
                format!("This provider has no resource type {name:?}. Check the spelling, or upgrade the provider."),
            )
        })
    }

    fn data_source(&self, name: &str) -> Result<&DataSourceEntry, Diagnostics> {
        self.data_sources.get(name).ok_or_else(|| {
            Diagnostics::error(
                "Unknown data source type",
                format!("This provider has no data source type {name:?}. Check the spelling, or upgrade the provider."),
            )
        })
    }

    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: false,
            // Nothing here depends on GetProviderSchema having been called: Terraform (1.6 and later) may then
            // reuse the schema it already has instead of asking every provider process it starts again.
            get_provider_schema_optional: true,
            move_resource_state: false,
        }
    }

    async fn plan(
        &self,
        req: &pb::plan_resource_change::Request,
    ) -> Result<pb::plan_resource_change::Response, Diagnostics> {
        let r = self.resource(&req.type_name)?;
        let what = |v: &str| format!("{v} of {}", req.type_name);
        let prior = decode_dynamic(&r.ty, req.prior_state.as_ref(), &what("prior state"))?;
        let proposed = decode_dynamic(
            &r.ty,
            req.proposed_new_state.as_ref(),
            &what("proposed new state"),
        )?;
        let config = decode_dynamic(&r.ty, req.config.as_ref(), &what("configuration"))?;
        if proposed.is_null() {
            // A destroy: only sent when the plan_destroy capability is on, which it is not; answer it anyway.
            return Ok(pb::plan_resource_change::Response {
                planned_state: Some(encode_dynamic(&r.ty, &Value::Null, &what("planned state"))?),
                planned_private: req.prior_private.clone(),
                ..Default::default()
            });
        }
        let outcome = r.imp.plan(&PlanRequest {
            schema: &r.schema,
            prior: &prior,
            proposed: &proposed,
            config: &config,
        })?;
        let mut bad = Vec::new();
        plan_violations(
            &r.schema.block,
            &config,
            &outcome.planned,
            &AttrPath::root(),
            &mut bad,
        );
        if !bad.is_empty() {
            let mut diags = Diagnostics::new();
            for path in bad {
                diags.push(
                    Diagnostic::error(
                        "Provider produced an invalid plan",
                        format!(
                            "{} planned a value for {path} that differs from the configuration. Terraform rejects \
                             such plans. This is a bug in the provider.",
                            req.type_name
                        ),
                    )
                    .at(path),
                );
            }
            return Err(diags);
        }
        Ok(pb::plan_resource_change::Response {
            planned_state: Some(encode_dynamic(
                &r.ty,
                &outcome.planned,
                &what("planned state"),
            )?),
            requires_replace: outcome.requires_replace.iter().map(path_to_pb).collect(),
            planned_private: req.prior_private.clone(),
            diagnostics: diagnostics_to_pb(&outcome.diagnostics),
            legacy_type_system: false,
        })
    }

    async fn apply(
        &self,
        req: &pb::apply_resource_change::Request,
    ) -> Result<pb::apply_resource_change::Response, (Diagnostics, Option<pb::DynamicValue>)> {
        let r = self.resource(&req.type_name).map_err(|d| (d, None))?;
        let what = |v: &str| format!("{v} of {}", req.type_name);
        let prior = decode_dynamic(&r.ty, req.prior_state.as_ref(), &what("prior state"))
            .map_err(|d| (d, None))?;
        let planned = decode_dynamic(&r.ty, req.planned_state.as_ref(), &what("planned state"))
            .map_err(|d| (d, None))?;
        // On failure, hand the prior state back so Terraform keeps tracking the object.
        let keep_prior = || req.prior_state.clone();
        let ctx = self.context();
        let new_state = if planned.is_null() {
            info!(type_name = %req.type_name, "deleting");
            r.imp
                .delete(&ctx, &prior)
                .await
                .map_err(|d| (d, keep_prior()))?;
            Value::Null
        } else {
            let new_state = if prior.is_null() {
                info!(type_name = %req.type_name, "creating");
                r.imp.create(&ctx, &planned).await.map_err(|d| (d, None))?
            } else {
                info!(type_name = %req.type_name, "updating");
                r.imp
                    .update(&ctx, &prior, &planned)
                    .await
                    .map_err(|d| (d, keep_prior()))?
            };
            if let Some(path) = first_unknown(&new_state, &AttrPath::root()) {
                let d = Diagnostic::error(
                    "Provider left a value unknown after apply",
                    format!("{} returned a new state in which {path} is still unknown. This is a bug in the provider.", req.type_name),
                )
                .at(path);
                return Err((d.into(), None));
            }
            new_state
        };
        let encoded =
            encode_dynamic(&r.ty, &new_state, &what("new state")).map_err(|d| (d, None))?;
        Ok(pb::apply_resource_change::Response {
            new_state: Some(encoded),
            private: if new_state.is_null() {
                Vec::new()
            } else {
                req.planned_private.clone()
            },
            diagnostics: Vec::new(),
            legacy_type_system: false,
        })
    }

    async fn read(
        &self,
        req: &pb::read_resource::Request,
    ) -> Result<pb::read_resource::Response, Diagnostics> {
        let r = self.resource(&req.type_name)?;
        let what = |v: &str| format!("{v} of {}", req.type_name);
        let state = decode_dynamic(&r.ty, req.current_state.as_ref(), &what("current state"))?;
        let new_state = if state.is_null() {
            None
        } else {
            r.imp.read(&self.context(), &state).await?
        };
        if new_state.is_none() {
            info!(type_name = %req.type_name, "object is gone");
        }
        let new_state = new_state.unwrap_or(Value::Null);
        Ok(pb::read_resource::Response {
            new_state: Some(encode_dynamic(&r.ty, &new_state, &what("refreshed state"))?),
            diagnostics: Vec::new(),
            private: req.private.clone(),
        })
    }

    async fn import(
        &self,
        req: &pb::import_resource_state::Request,
    ) -> Result<pb::import_resource_state::Response, Diagnostics> {
        let r = self.resource(&req.type_name)?;
        let states = r.imp.import(&self.context(), &req.id).await?;
        let mut imported = Vec::new();
        for state in &states {
            imported.push(pb::import_resource_state::ImportedResource {
                type_name: req.type_name.clone(),
                state: Some(encode_dynamic(
                    &r.ty,
                    state,
                    &format!("imported state of {}", req.type_name),
                )?),
                private: Vec::new(),
            });
        }
        Ok(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: Vec::new(),
        })
    }

    fn upgrade(
        &self,
        req: &pb::upgrade_resource_state::Request,
    ) -> Result<pb::DynamicValue, Diagnostics> {
        let r = self.resource(&req.type_name)?;
        let raw = req.raw_state.as_ref();
        let json = raw.map(|s| s.json.as_slice()).unwrap_or_default();
        if json.is_empty() {
            if raw.is_some_and(|s| !s.flatmap.is_empty()) {
                return Err(Diagnostics::error(
                    "Legacy resource state",
                    format!("The state of this {} is in the flatmap format of Terraform 0.11, which this provider does not read.", req.type_name),
                ));
            }
            return encode_dynamic(&r.ty, &Value::Null, "upgraded state");
        }
        let raw: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
            Diagnostics::error(
                "Invalid stored state",
                format!(
                    "The state of this {} is not valid JSON: {e}.",
                    req.type_name
                ),
            )
        })?;
        let upgraded = r.imp.upgrade_state(&r.schema, req.version, &raw)?;
        encode_dynamic(
            &r.ty,
            &upgraded,
            &format!("upgraded state of {}", req.type_name),
        )
    }
}

/// Logs a finished call: its errors at warn level (summaries only: details may quote configuration).
fn log_outcome(rpc: &str, type_name: &str, diags: &Diagnostics) {
    if diags.has_errors() {
        for d in diags.iter() {
            warn!(tf_rpc = rpc, type_name, summary = %d.summary, path = ?d.path.as_ref().map(ToString::to_string), "call failed");
        }
    } else {
        debug!(tf_rpc = rpc, type_name, "call done");
    }
}

#[tonic::async_trait]
impl pb::provider_server::Provider for ProviderService {
    async fn get_metadata(
        &self,
        _: Request<pb::get_metadata::Request>,
    ) -> Result<Response<pb::get_metadata::Response>, Status> {
        debug!(tf_rpc = "GetMetadata", "call");
        Ok(Response::new(pb::get_metadata::Response {
            server_capabilities: Some(Self::capabilities()),
            diagnostics: diagnostics_to_pb(&self.schema_problems),
            data_sources: self
                .data_sources
                .keys()
                .map(|k| pb::get_metadata::DataSourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            resources: self
                .resources
                .keys()
                .map(|k| pb::get_metadata::ResourceMetadata {
                    type_name: k.clone(),
                })
                .collect(),
            functions: Vec::new(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<pb::get_provider_schema::Request>,
    ) -> Result<Response<pb::get_provider_schema::Response>, Status> {
        debug!(tf_rpc = "GetProviderSchema", "call");
        Ok(Response::new(pb::get_provider_schema::Response {
            provider: Some(schema_to_pb(&self.provider_schema)),
            resource_schemas: self
                .resources
                .iter()
                .map(|(k, r)| (k.clone(), schema_to_pb(&r.schema)))
                .collect(),
            data_source_schemas: self
                .data_sources
                .iter()
                .map(|(k, d)| (k.clone(), schema_to_pb(&d.schema)))
                .collect(),
            functions: HashMap::new(),
            diagnostics: diagnostics_to_pb(&self.schema_problems),
            provider_meta: None,
            server_capabilities: Some(Self::capabilities()),
        }))
    }

    async fn validate_provider_config(
        &self,
        req: Request<pb::validate_provider_config::Request>,
    ) -> Result<Response<pb::validate_provider_config::Response>, Status> {
        let req = req.into_inner();
        let diags = decode_dynamic(
            &self.provider_ty,
            req.config.as_ref(),
            "provider configuration",
        )
        .map_or_else(|d| d, |config| self.provider.validate(&config));
        log_outcome("ValidateProviderConfig", "", &diags);
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diagnostics_to_pb(&diags),
        }))
    }

    async fn validate_resource_config(
        &self,
        req: Request<pb::validate_resource_config::Request>,
    ) -> Result<Response<pb::validate_resource_config::Response>, Status> {
        let req = req.into_inner();
        let diags = self
            .resource(&req.type_name)
            .and_then(|r| {
                Ok((
                    r,
                    decode_dynamic(
                        &r.ty,
                        req.config.as_ref(),
                        &format!("configuration of {}", req.type_name),
                    )?,
                ))
            })
            .map_or_else(|d| d, |(r, config)| r.imp.validate(&config));
        log_outcome("ValidateResourceConfig", &req.type_name, &diags);
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diagnostics_to_pb(&diags),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        req: Request<pb::validate_data_resource_config::Request>,
    ) -> Result<Response<pb::validate_data_resource_config::Response>, Status> {
        let req = req.into_inner();
        let diags = self
            .data_source(&req.type_name)
            .and_then(|d| {
                Ok((
                    d,
                    decode_dynamic(
                        &d.ty,
                        req.config.as_ref(),
                        &format!("configuration of {}", req.type_name),
                    )?,
                ))
            })
            .map_or_else(|d| d, |(d, config)| d.imp.validate(&config));
        log_outcome("ValidateDataResourceConfig", &req.type_name, &diags);
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diagnostics_to_pb(&diags),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        req: Request<pb::upgrade_resource_state::Request>,
    ) -> Result<Response<pb::upgrade_resource_state::Response>, Status> {
        let req = req.into_inner();
        let (state, diags) = match self.upgrade(&req) {
            Ok(s) => (Some(s), Diagnostics::new()),
            Err(d) => (None, d),
        };
        log_outcome("UpgradeResourceState", &req.type_name, &diags);
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state: state,
            diagnostics: diagnostics_to_pb(&diags),
        }))
    }

    async fn configure_provider(
        &self,
        req: Request<pb::configure_provider::Request>,
    ) -> Result<Response<pb::configure_provider::Response>, Status> {
        let req = req.into_inner();
        info!(tf_rpc = "ConfigureProvider", terraform_version = %req.terraform_version, "configuring");
        let diags = match decode_dynamic(
            &self.provider_ty,
            req.config.as_ref(),
            "provider configuration",
        ) {
            Ok(config) => self
                .provider
                .configure(&self.context(), &req.terraform_version, &config)
                .await
                .err()
                .unwrap_or_default(),
            Err(d) => d,
        };
        log_outcome("ConfigureProvider", "", &diags);
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diagnostics_to_pb(&diags),
        }))
    }

    async fn read_resource(
        &self,
        req: Request<pb::read_resource::Request>,
    ) -> Result<Response<pb::read_resource::Response>, Status> {
        let req = req.into_inner();
        debug!(tf_rpc = "ReadResource", type_name = %req.type_name, "call");
        let resp = self.read(&req).await.unwrap_or_else(|diags| {
            log_outcome("ReadResource", &req.type_name, &diags);
            // Keep the current state: a failed refresh must not make Terraform forget the object.
            pb::read_resource::Response {
                new_state: req.current_state.clone(),
                diagnostics: diagnostics_to_pb(&diags),
                private: req.private.clone(),
            }
        });
        Ok(Response::new(resp))
    }

    async fn plan_resource_change(
        &self,
        req: Request<pb::plan_resource_change::Request>,
    ) -> Result<Response<pb::plan_resource_change::Response>, Status> {
        let req = req.into_inner();
        debug!(tf_rpc = "PlanResourceChange", type_name = %req.type_name, "call");
        let resp = self.plan(&req).await.unwrap_or_else(|diags| {
            log_outcome("PlanResourceChange", &req.type_name, &diags);
            pb::plan_resource_change::Response {
                diagnostics: diagnostics_to_pb(&diags),
                ..Default::default()
            }
        });
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        req: Request<pb::apply_resource_change::Request>,
    ) -> Result<Response<pb::apply_resource_change::Response>, Status> {
        let req = req.into_inner();
        debug!(tf_rpc = "ApplyResourceChange", type_name = %req.type_name, "call");
        let resp = self.apply(&req).await.unwrap_or_else(|(diags, state)| {
            log_outcome("ApplyResourceChange", &req.type_name, &diags);
            pb::apply_resource_change::Response {
                new_state: state,
                private: req.planned_private.clone(),
                diagnostics: diagnostics_to_pb(&diags),
                legacy_type_system: false,
            }
        });
        Ok(Response::new(resp))
    }

    async fn import_resource_state(
        &self,
        req: Request<pb::import_resource_state::Request>,
    ) -> Result<Response<pb::import_resource_state::Response>, Status> {
        let req = req.into_inner();
        debug!(tf_rpc = "ImportResourceState", type_name = %req.type_name, "call");
        let resp = self.import(&req).await.unwrap_or_else(|diags| {
            log_outcome("ImportResourceState", &req.type_name, &diags);
            pb::import_resource_state::Response {
                imported_resources: Vec::new(),
                diagnostics: diagnostics_to_pb(&diags),
            }
        });
        Ok(Response::new(resp))
    }

    async fn move_resource_state(
        &self,
        _: Request<pb::move_resource_state::Request>,
    ) -> Result<Response<pb::move_resource_state::Response>, Status> {
        Err(Status::unimplemented(
            "this provider does not support moving resources between types",
        ))
    }

    async fn read_data_source(
        &self,
        req: Request<pb::read_data_source::Request>,
    ) -> Result<Response<pb::read_data_source::Response>, Status> {
        let req = req.into_inner();
        debug!(tf_rpc = "ReadDataSource", type_name = %req.type_name, "call");
        let result = async {
            let d = self.data_source(&req.type_name)?;
            let what = |v: &str| format!("{v} of data source {}", req.type_name);
            let config = decode_dynamic(&d.ty, req.config.as_ref(), &what("configuration"))?;
            let state = d.imp.read(&self.context(), &config).await?;
            if let Some(path) = first_unknown(&state, &AttrPath::root()) {
                return Err(Diagnostic::error(
                    "Provider left a value unknown",
                    format!(
                        "Data source {} returned {path} unknown. This is a bug in the provider.",
                        req.type_name
                    ),
                )
                .at(path)
                .into());
            }
            encode_dynamic(&d.ty, &state, &what("state"))
        }
        .await;
        let resp = match result {
            Ok(state) => pb::read_data_source::Response {
                state: Some(state),
                diagnostics: Vec::new(),
            },
            Err(diags) => {
                log_outcome("ReadDataSource", &req.type_name, &diags);
                pb::read_data_source::Response {
                    state: None,
                    diagnostics: diagnostics_to_pb(&diags),
                }
            }
        };
        Ok(Response::new(resp))
    }

    async fn get_functions(
        &self,
        _: Request<pb::get_functions::Request>,
    ) -> Result<Response<pb::get_functions::Response>, Status> {
        Ok(Response::new(pb::get_functions::Response {
            functions: HashMap::new(),
            diagnostics: Vec::new(),
        }))
    }

    async fn call_function(
        &self,
        _: Request<pb::call_function::Request>,
    ) -> Result<Response<pb::call_function::Response>, Status> {
        Err(Status::unimplemented("this provider has no functions"))
    }

    async fn stop_provider(
        &self,
        _: Request<pb::stop_provider::Request>,
    ) -> Result<Response<pb::stop_provider::Response>, Status> {
        info!(
            tf_rpc = "StopProvider",
            "Terraform asked the provider to stop"
        );
        self.stop_calls_in_flight();
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}

/// go-plugin's `GRPCController`: `Shutdown` makes the server exit.
#[derive(Debug)]
pub struct Controller {
    shutdown: Arc<tokio::sync::Notify>,
}

impl Controller {
    /// A controller that wakes `shutdown` when Terraform asks the plugin to exit.
    pub fn new(shutdown: Arc<tokio::sync::Notify>) -> Controller {
        Controller { shutdown }
    }
}

#[tonic::async_trait]
impl gp::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(&self, _: Request<gp::Empty>) -> Result<Response<gp::Empty>, Status> {
        debug!("Terraform asked the plugin to shut down");
        self.shutdown.notify_one();
        Ok(Response::new(gp::Empty {}))
    }
}

/// go-plugin's `GRPCStdio`: the stream stays open and empty until the server shuts down (this provider's stderr
/// already reaches Terraform, and it writes nothing else to stdout after the handshake).
#[derive(Debug)]
pub struct Stdio {
    closed: watch::Receiver<bool>,
}

impl Stdio {
    /// A stdio service whose streams end when `closed` turns true.
    pub fn new(closed: watch::Receiver<bool>) -> Stdio {
        Stdio { closed }
    }
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<gp::StdioData, Status>> + Send>>;

#[tonic::async_trait]
impl gp::grpc_stdio_server::GrpcStdio for Stdio {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(&self, _: Request<gp::Empty>) -> Result<Response<StdioStream>, Status> {
        use tokio_stream::StreamExt as _;
        let stream = tokio_stream::wrappers::WatchStream::new(self.closed.clone())
            .take_while(|closed| !*closed)
            .filter_map(|_| None::<Result<gp::StdioData, Status>>);
        Ok(Response::new(Box::pin(stream)))
    }
}
